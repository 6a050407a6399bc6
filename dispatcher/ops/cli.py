"""The `dispatcher` command: serve, worker, sandbox, redis, accounts, status, demo, dashboard.

Each command imports what only it needs inside its own function: `dispatcher --help` or
`dispatcher status` should not pay for uvicorn, FastAPI, the worker pool or the sandbox.
That is the one reason for the function-level imports below.
"""

from __future__ import annotations

import json
import sys

import click

from .. import logging as dlog
from ..errors import DispatcherError, StoreUnavailable
from ..logging import mask_url
from ..settings import Settings
from .redis_server import PASSWORD_FILE, EmbeddedRedis, resolve_url


def _settings() -> Settings:
    return Settings.from_env()


def _dispatcher():
    from ..client import Dispatcher

    return Dispatcher.from_url(settings=_settings())


class _Group(click.Group):
    """Turn library errors into one clear line and exit 1, never a stack trace."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DispatcherError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main():
    """Self-hosted load balancing for AI generation accounts (useapi.net-compatible)."""
    s = _settings()
    dlog.configure(s.log_format, s.log_level)


# -- servers -----------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="Listen address (default loopback, DISPATCHER_HOST).")
@click.option("--port", type=int, default=None, help="Port (DISPATCHER_PORT, default 8000).")
def serve(host, port):
    """Run the HTTP API."""
    import uvicorn

    from ..api.app import create_app
    from ..secrets import check_key

    from ..useapi_accounts import check_settings

    s = _settings()
    check_settings(s)  # a missing or refused DISPATCHER_USEAPI_TOKEN stops here
    d = _dispatcher()
    try:
        check_key(d.core.vault, d.core.r)  # a wrong DISPATCHER_SECRET_KEY stops here, with the message
    except StoreUnavailable:
        pass  # Redis away: the API starts anyway and answers 503 until it is back
    app = create_app(d)
    uvicorn.run(app, host=host or s.host, port=port or s.port, log_level="warning", access_log=False)


@main.command()
@click.option("--processes", "-n", type=int, default=2, show_default=True, help="Worker processes.")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty (tests).")
def worker(processes, burst):
    """Run RQ worker processes; each also runs the maintenance loop (one active at a time)."""
    from workers.pool import run_pool

    run_pool(_settings(), processes=processes, burst=burst)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8100, show_default=True)
def sandbox(host, port):
    """Run the simulated upstream (every provider's emulation) for tests and the demo."""
    from ..sandbox import serve as serve_sandbox

    serve_sandbox(host=host, port=port)


# -- embedded redis ----------------------------------------------------------------
@main.group()
def redis():
    """Manage the embedded Redis in the data directory."""


@redis.command("start")
def redis_start():
    """Start the embedded Redis (if it is not running) and print its URL, password masked."""
    server = EmbeddedRedis.for_settings(_settings())
    click.echo(_shown(server.start()))


@redis.command("stop")
def redis_stop():
    EmbeddedRedis(_settings().data_dir).stop()
    click.echo("stopped")


@redis.command("url")
def redis_url():
    """Print the Redis URL every command would use (starting the embedded server if needed), password
    masked: the embedded Redis's is in <data dir>/redis_password."""
    click.echo(_shown(resolve_url(_settings())))


def _shown(url: str) -> str:
    s = _settings()
    where = "" if s.redis_url else f"  (password in {s.data_dir / PASSWORD_FILE})"
    return f"{mask_url(url)}{where}"


# -- accounts ----------------------------------------------------------------------
@main.group()
def accounts():
    """Add, list, show and remove provider accounts."""


@accounts.command("add")
@click.argument("provider")
@click.option("--max-jobs", "max_jobs", type=int, required=True)
@click.option("--email")
@click.option("--password", help="Prompted for (hidden) when --email is given without it.")
@click.option("--cookie")
@click.option("--account")
@click.option("--token")
def accounts_add(provider, max_jobs, email, password, cookie, account, token):
    """Log in upstream and store an account (create or update)."""
    if email and not password:
        password = click.prompt("password", hide_input=True)
    body = {k: v for k, v in dict(email=email, password=password, cookie=cookie, account=account,
                                  token=token).items() if v is not None}
    body["maxJobs"] = max_jobs
    from .. import providers

    spec = providers.get(provider)
    path_id = None if spec.id_from_login else body.get(spec.id_field)
    click.echo(json.dumps(_dispatcher().upsert_account(provider, body, path_id), indent=2, ensure_ascii=False))


@accounts.command("list")
@click.argument("provider")
def accounts_list(provider):
    click.echo(json.dumps(_dispatcher().list_accounts(provider), indent=2, ensure_ascii=False))


@accounts.command("show")
@click.argument("provider")
@click.argument("account_id")
def accounts_show(provider, account_id):
    click.echo(json.dumps(_dispatcher().account_view(provider, account_id), indent=2, ensure_ascii=False))


@accounts.command("rm")
@click.argument("provider")
@click.argument("account_id")
@click.option("--remote", is_flag=True, help="Also delete it at useapi.net (a provider reached through useapi).")
def accounts_rm(provider, account_id, remote):
    _dispatcher().delete_account(provider, account_id, remote=remote)
    click.echo(f"deleted {provider} {account_id}" + (" here and at useapi" if remote else ""))


@accounts.command("import")
@click.option("--from-useapi", "from_useapi", is_flag=True, required=True,
              help="Mirror the accounts configured at useapi.net (DISPATCHER_USEAPI_TOKEN).")
@click.option("--provider", default=None, help="Only this provider (default: every provider reached through useapi).")
def accounts_import(from_useapi, provider):
    """Mirror a team's useapi.net accounts: same maxJobs; one useapi shows in error stays out of rotation."""
    report = _dispatcher().import_useapi_accounts(provider)
    for name, found in report.items():
        click.echo(f"{name}: {len(found)} account(s)")
        for account_id, outcome in found.items():
            click.echo(f"  {account_id}: {outcome}")


# -- views -------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json):
    """Providers, accounts, slots, waiting lines, token expiry and errors."""
    from ..overview import collect
    from .status import render_table

    data = collect(_dispatcher())
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render_table(data)


@main.command()
@click.option("--once", is_flag=True, help="Exit after the summary (used by the tests).")
@click.option("--jobs", type=int, default=36, show_default=True, help="Generations to submit.")
@click.option("--upstream", type=click.Choice(["direct", "useapi"]), default="direct", show_default=True,
              help="direct: the sandbox's providers; useapi: every provider through its useapi.net emulation.")
def demo(once, jobs, upstream):
    """Start everything on embedded defaults, register demo accounts, run generations, show them live."""
    from .demo import run_demo

    sys.exit(run_demo(_settings(), once=once, jobs=jobs, upstream=upstream))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Port (DISPATCHER_DASHBOARD_PORT, default 9181).")
@click.option("--username", help="Basic-auth user, required off loopback (DISPATCHER_DASHBOARD_USER).")
@click.option("--password", help="Basic-auth password (DISPATCHER_DASHBOARD_PASSWORD).")
def dashboard(host, port, username, password):
    """Run rq-dashboard against the dispatcher's Redis (loopback by default)."""
    from .dashboard import run_dashboard

    run_dashboard(_settings(), host=host, port=port, username=username, password=password)


if __name__ == "__main__":
    main()
