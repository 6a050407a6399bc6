"""`dispatcher dashboard`: rq-dashboard against the dispatcher's Redis, plus an Accounts page.

Every step job is described `"<provider> <step> <public id> on <account>"` (the id the
provider-shaped endpoints answer, e.g. `user:dispatcher-runwayml-task:<hex>`); a waiting
generation's start job, deferred, reads `"<provider> start <public id>, waiting for a slot"`.
The step that ended a generation stays listed for `DISPATCHER_STEP_HISTORY_TTL` (24 h): under
Finished, or under Failed with what happened as its exception text
(`moderated (422): <message> — account a@b.com, taskId user:…`); the other steps for 10 s
(`dispatcher.steps`, which says why). rq-dashboard counts a registry without dropping its expired entries
(RQ's own `count`, as `rq info` uses, drops them first): before each data request the
finished and failed registries are cleaned (`rq_glue.clean_ended`), so counts and lists agree.

The Accounts page (`dashboard_accounts`, linked from the navigation bar) shows every
provider's accounts, slots, states, tokens and waiting lines, and refreshes itself.

Loopback by default. Listening anywhere else requires basic auth
(`DISPATCHER_DASHBOARD_USER` / `DISPATCHER_DASHBOARD_PASSWORD`), checked in
constant time on every request, static files included.

rq-dashboard's actions (empty a queue, delete, requeue) are plain POSTs with no
CSRF token, so `HostGuard` wraps the whole app, before basic auth:
- DNS rebinding: a request whose `Host` is not a name the dashboard serves
  answers 421. Served: any IP address literal (a rebinding page reaches us under
  its own domain name, never under an IP), `localhost` and `*.localhost`
  (browsers resolve those to loopback themselves), the `--host` the dashboard
  listens on, and this machine's host name. The port is not compared: a
  rebinding page cannot choose our name, and SSH tunnels or Docker port
  mappings change the port the browser sees.
- Cross-site requests: POST, PUT, PATCH and DELETE, and `/requeue/…` (which
  rq-dashboard also accepts as a GET), need an `Origin` (when absent, a
  `Referer`) whose host and port are the request's `Host`; otherwise 403. The
  dashboard's own pages send it; scripts calling these endpoints must send
  `Origin: http://<the host:port they call>`.

rq-dashboard 0.9.0 with rq 3.0: its views and JSON endpoints work (queues,
workers, every registry, job details), with two snags worked around here:
- its wheel imports `six` (`rq_dashboard/web.py: from six import string_types`)
  without declaring the dependency, so `import rq_dashboard` fails on a clean
  environment: when `six` is missing we register a minimal stand-in (only
  `string_types` is used);
- mounted on an app of our own, the app's `/static` route shadows the
  blueprint's and every page loads without its JavaScript (tables stay on
  "Loading..."): the app's static folder is rq-dashboard's own.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import sys
import types
from pathlib import Path
from urllib.parse import urlsplit

from .. import rq_glue
from ..errors import ConfigurationError
from .. import sentinel
from ..logging import get_logger, mask_url, register_secret
from .redis_server import resolve_url

POLL_INTERVAL_MS = 2000


def _ensure_six() -> None:
    try:
        import six  # noqa: F401
    except ImportError:
        shim = types.ModuleType("six")
        shim.string_types = (str,)
        sys.modules["six"] = shim


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, username: str | None, password: str | None) -> None:
    """Refuse to serve the dashboard off loopback without basic auth; refuse half-set credentials."""
    if bool(username) != bool(password):
        raise ConfigurationError("dashboard basic auth needs both a user and a password "
                                 "(DISPATCHER_DASHBOARD_USER and DISPATCHER_DASHBOARD_PASSWORD)")
    if not is_loopback(host) and not username:
        raise ConfigurationError(
            f"refusing to serve rq-dashboard on {host} without basic auth: set DISPATCHER_DASHBOARD_USER "
            "and DISPATCHER_DASHBOARD_PASSWORD (or --username/--password), or listen on 127.0.0.1")


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNSAFE_PATH_PREFIXES = ("/requeue/",)  # rq-dashboard's "requeue all" also answers GET


def _host_name(netloc: str) -> str:
    """The host part of `host[:port]` / `[v6][:port]`, lowercased, without a trailing dot."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0].rstrip(".") if netloc.count(":") == 1 else netloc.rstrip(".")


def served_names(listen_host: str) -> frozenset[str]:
    """The names (besides IP literals and *.localhost) a request's Host may carry."""
    names = {"localhost", _host_name(listen_host), socket.gethostname().lower().rstrip(".")}
    return frozenset(n for n in names if n)


def host_served(host_header: str, names: frozenset[str]) -> bool:
    name = _host_name(host_header)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in names or name.endswith(".localhost")


def same_origin(source: str | None, host_header: str) -> bool:
    """Whether an `Origin`/`Referer` value names the request's own `Host` (host and port)."""
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default = ":443" if parts.scheme == "https" else ":80"
    given, host = parts.netloc.lower().rsplit("@", 1)[-1], host_header.strip().lower()
    return given == host or given == host + default or given + default == host


class HostGuard:
    """WSGI middleware: 421 for a Host the dashboard does not serve (DNS rebinding), 403 for an
    unsafe request whose Origin (or Referer) is not the dashboard itself (CSRF)."""

    def __init__(self, app, listen_host: str):
        self.app = app
        self.names = served_names(listen_host)

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST") or ""
        if not host_served(host, self.names):
            return _refuse(start_response, "421 Misdirected Request",
                           "This dashboard does not serve that host name.")
        unsafe = (environ.get("REQUEST_METHOD", "GET").upper() in UNSAFE_METHODS
                  or (environ.get("PATH_INFO") or "").startswith(UNSAFE_PATH_PREFIXES))
        if unsafe:
            source = environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER")
            if not same_origin(source, host):
                return _refuse(start_response, "403 Forbidden",
                               "Cross-site request refused: send an Origin header naming this dashboard.")
        return self.app(environ, start_response)


def _refuse(start_response, status: str, text: str):
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def build_app(redis_url: str, *, username: str | None = None, password: str | None = None,
              poll_interval_ms: int = POLL_INTERVAL_MS, listen_host: str = "127.0.0.1", settings=None):
    """The rq-dashboard Flask app on `redis_url`, with the Accounts page (read through a
    `Dispatcher` on `redis_url` with `settings`, default the environment's), behind basic auth
    when credentials are given, and behind `HostGuard` (Host and Origin checks) always."""
    _ensure_six()
    # rq-dashboard, Flask and werkzeug come with the optional `dashboard` extra: imported here,
    # so that a missing extra is one clear error from the command that needs it
    try:
        import rq_dashboard
    except ImportError:
        raise ConfigurationError("rq-dashboard is not installed: pip install 'dispatcher[dashboard]'") from None
    from flask import Flask, Response, request
    from rq_dashboard.web import blueprint, setup_rq_connection

    from . import dashboard_accounts

    # the app's own /static route shadows the blueprint's: point it at rq-dashboard's files
    app = Flask("dispatcher.ops.dashboard", static_folder=str(Path(rq_dashboard.__file__).parent / "static"))
    sentinel_password = (settings or _env_settings()).redis_sentinel_password  # redis+sentinel:// only
    app.config.update(**sentinel.dashboard_config(redis_url, sentinel_password),
                      RQ_DASHBOARD_POLL_INTERVAL=poll_interval_ms, DEPRECATED_OPTIONS=[])
    if username:
        register_secret(password)
        expected = (username.encode(), password.encode())

        @app.before_request
        def basic_auth():
            auth = request.authorization
            given = (((auth.username or "").encode(), (auth.password or "").encode()) if auth else (b"", b""))
            ok = hmac.compare_digest(given[0], expected[0]) & hmac.compare_digest(given[1], expected[1])
            if not ok:
                return Response("Authentication required", 401,
                                {"WWW-Authenticate": 'Basic realm="dispatcher rq-dashboard"'})
            return None

    @app.before_request
    def clean_registries():
        # rq-dashboard counts registries without cleaning them: drop their expired entries first
        if "/data/" in request.path:
            _clean_ended(app)

    _answer_dependency_ids_as_bytes()
    app.register_blueprint(blueprint, url_prefix="")
    setup_rq_connection(app)
    dashboard_accounts.install(app, lambda: _dispatcher(redis_url, settings), poll_interval_ms)
    app.wsgi_app = HostGuard(app.wsgi_app, listen_host)
    return app


def _answer_dependency_ids_as_bytes() -> None:
    """rq-dashboard 0.9's job page decodes each of `job.dependency_ids`, which RQ 3 already
    answers as str: the page of any job with dependencies (a backend's job that `depends_on` a
    generation, README "RQ-native backends") failed with a 500. Its module fetches jobs through
    this subclass instead, whose ids are bytes, as rq-dashboard expects."""
    import rq_dashboard.web
    from rq.job import Job

    if getattr(rq_dashboard.web.Job, "_dispatcher_shim", False):
        return

    class DashboardJob(Job):
        _dispatcher_shim = True

        @property
        def dependency_ids(self):  # type: ignore[override]
            return [i.encode() if isinstance(i, str) else i for i in super().dependency_ids]

    rq_dashboard.web.Job = DashboardJob


def _clean_ended(app) -> None:
    import redis

    try:
        rq_glue.clean_ended(app.redis_conn)
    except (redis.ConnectionError, redis.TimeoutError):
        pass  # rq-dashboard's own reads answer the error


def _env_settings():
    from ..settings import Settings

    return Settings.from_env()


def _dispatcher(redis_url: str, settings):
    from ..client import Dispatcher

    return Dispatcher(redis_url, settings or _env_settings())


def run_dashboard(settings, *, host: str = "127.0.0.1", port: int | None = None, username: str | None = None,
                  password: str | None = None) -> None:
    """Serve rq-dashboard until interrupted (threaded werkzeug server)."""
    from werkzeug.serving import run_simple  # the `dashboard` extra (see build_app)

    port = port or settings.dashboard_port
    username = username or settings.dashboard_user
    password = password or settings.dashboard_password
    check_exposure(host, username, password)
    redis_url = resolve_url(settings)
    app = build_app(redis_url, username=username, password=password, listen_host=host, settings=settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    get_logger().info("dashboard listening", url=f"http://{host}:{port}/", redis=mask_url(redis_url),
                      basic_auth=bool(username))
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
