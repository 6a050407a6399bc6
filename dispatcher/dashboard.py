"""`dispatcher dashboard`: rq-dashboard against the dispatcher's Redis.

Every step job is described `"<provider> <step> <generation id> on <account>"`,
so the dashboard shows which generation, provider and account a job belongs to.

Loopback by default. Listening anywhere else requires basic auth
(`DISPATCHER_DASHBOARD_USER` / `DISPATCHER_DASHBOARD_PASSWORD`), checked in
constant time on every request, static files included.

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
import sys
import types
from pathlib import Path

from .errors import ConfigurationError
from .logging import get_logger, register_secret

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


def build_app(redis_url: str, *, username: str | None = None, password: str | None = None,
              poll_interval_ms: int = POLL_INTERVAL_MS):
    """The rq-dashboard Flask app on `redis_url`, behind basic auth when credentials are given."""
    _ensure_six()
    try:
        import rq_dashboard
    except ImportError:
        raise ConfigurationError("rq-dashboard is not installed: pip install 'dispatcher[dashboard]'") from None
    from flask import Flask, Response, request
    from rq_dashboard.web import blueprint, setup_rq_connection

    # the app's own /static route shadows the blueprint's: point it at rq-dashboard's files
    app = Flask("dispatcher.dashboard", static_folder=str(Path(rq_dashboard.__file__).parent / "static"))
    app.config.update(RQ_DASHBOARD_REDIS_URL=redis_url, RQ_DASHBOARD_POLL_INTERVAL=poll_interval_ms,
                      DEPRECATED_OPTIONS=[])
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

    app.register_blueprint(blueprint, url_prefix="")
    setup_rq_connection(app)
    return app


def run_dashboard(settings, *, host: str = "127.0.0.1", port: int | None = None, username: str | None = None,
                  password: str | None = None) -> None:
    """Serve rq-dashboard until interrupted (threaded werkzeug server)."""
    from werkzeug.serving import run_simple

    from .redis_server import resolve_url

    port = port or settings.dashboard_port
    username = username or settings.dashboard_user
    password = password or settings.dashboard_password
    check_exposure(host, username, password)
    app = build_app(resolve_url(settings), username=username, password=password)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    get_logger().info("dashboard listening", url=f"http://{host}:{port}/", basic_auth=bool(username))
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
