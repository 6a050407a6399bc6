"""Redis Sentinel URLs: `redis+sentinel://[:password@]host[:port][,host[:port]…]/<service>[/<db>]`.

The form rq-dashboard accepts (its parser is `redis_sentinel_url`), read the same way:
- the hosts are the *sentinels* (port 26379 when left out);
- `<service>` is the name the sentinels monitor (`sentinel monitor <service> …`), `<db>` the
  database (0 when left out);
- the password in the URL is the one of the Redis *servers* (primary and replicas); sentinels
  that require their own password get it from `DISPATCHER_REDIS_SENTINEL_PASSWORD` (rq-dashboard:
  `RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD`), never from the URL;
- query options: `socket_timeout`, `socket_connect_timeout` (the servers), the same prefixed
  `sentinel_` (the sentinels), `min_other_sentinels`, and `db` / `service` (instead of the path).

Unlike rq-dashboard, which ignores what it does not know, a URL that does not fit is refused
with a `ConfigurationError` naming the problem, password masked. The password is
percent-decoded (as redis-py does for `redis://` URLs); rq-dashboard is handed it decoded too
(`dashboard_config`), so both read the same password.

Clients are built with redis-py's `Sentinel(...).master_for(service)`: each new connection asks
the sentinels where the primary is, and a connection to a demoted primary (READONLY) is dropped,
so a failover is followed without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError
from .logging import register_secret

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
FORM = "redis+sentinel://[:password@]host:port[,host:port…]/<service>/<db>"
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
SENTINEL_TIMEOUT = 1.0  # seconds to reach one sentinel; a dead one is skipped for the next


@dataclass(frozen=True)
class SentinelURL:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    password: str | None = field(default=None, repr=False)  # the servers' (primary, replicas)
    min_other_sentinels: int = 0
    client_options: dict = field(default_factory=dict)  # socket_* of the server connections
    sentinel_options: dict = field(default_factory=dict)  # socket_* of the sentinel connections

    def without_password(self) -> str:
        """The URL rq-dashboard is given: the same, minus the password (handed over separately)."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        query = "&".join([*(f"{k}={v}" for k, v in self.client_options.items()),
                          *(f"sentinel_{k}={v}" for k, v in self.sentinel_options.items()),
                          *([f"min_other_sentinels={self.min_other_sentinels}"] if self.min_other_sentinels else [])])
        return f"{SCHEME}://{hosts}/{self.service}/{self.db}" + (f"?{query}" if query else "")


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.lower().startswith(SCHEME + ":")


def shown(url: str) -> str:
    """`url` fit to show in an error: whatever stands before the last `@` of its host part masked
    (it may not parse, so no regular URL masking is trusted with it)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else "***"
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = ":***@" + netloc.rpartition("@")[2]
    path, mark, query = path.partition("?")
    if mark:  # a password given as an option (refused) is not shown either
        query = "&".join(f"{k}=***" if any(w in k.lower() for w in ("pass", "auth", "secret", "token")) else
                         f"{k}{eq}{v}" for k, eq, v in (pair.partition("=") for pair in query.split("&")))
    return f"{scheme}://{netloc}{slash}{path}{mark}{query}"


def _bad(url: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"DISPATCHER_REDIS_URL {shown(url)}: {problem}; expected {FORM}")


def parse(url: str) -> SentinelURL:
    """The parts of a `redis+sentinel://` URL, or a `ConfigurationError` saying what does not fit."""
    if not is_sentinel(url):
        raise _bad(url, f"not a {SCHEME}:// URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _bad(url, f"not a URL ({exc})") from None
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0]
    auth, at, hostspec = netloc.rpartition("@")
    password = None
    if at:
        user, colon, secret = auth.partition(":")
        if not colon or user:
            raise _bad(url, "only a password may stand before @ (':password@'; a user name is not supported)")
        password = unquote(secret) or None
        register_secret(password)
    hosts = tuple(_host(url, spec) for spec in hostspec.split(","))
    options = _options(url, parts.query)
    path = [p for p in parts.path.split("/")[1:]] if parts.path else []
    if path and path[-1] == "":
        path = path[:-1]
    if len(path) > 2:
        raise _bad(url, "the path takes /<service>/<db> only")
    service = options.pop("service", None) or (unquote(path[0]) if path else "")
    if not service:
        raise _bad(url, "the service name (the primary's name the sentinels monitor) is missing")
    db = options.pop("db", None)
    if db is None:
        db = path[1] if len(path) > 1 else "0"
    if not str(db).isdigit():
        raise _bad(url, f"the database must be a whole number, got {db!r}")
    return SentinelURL(hosts=hosts, service=service, db=int(db), password=password,
                       min_other_sentinels=int(options.pop("min_other_sentinels", 0)),
                       client_options={k: v for k, v in options.items() if not k.startswith("sentinel_")},
                       sentinel_options={k[len("sentinel_"):]: v for k, v in options.items()
                                         if k.startswith("sentinel_")})


def _host(url: str, spec: str) -> tuple[str, int]:
    spec = spec.strip()
    if spec.startswith("["):  # [::1]:26379
        host, _, port = spec[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _, port = spec.partition(":")
    if not host:
        raise _bad(url, "a sentinel address is empty (host:port, comma separated)")
    if port == "":
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"sentinel {host!r} has no valid port ({port!r})")
    return host, int(port)


def _options(url: str, query: str) -> dict:
    known = {"db", "service", "min_other_sentinels", "client_type",
             *_FLOAT_OPTIONS, *(f"sentinel_{o}" for o in _FLOAT_OPTIONS)}
    out: dict = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in known:
            raise _bad(url, f"unknown option {name!r} (known: {', '.join(sorted(known))})")
        if len(values) > 1:
            raise _bad(url, f"option {name!r} is given more than once")
        value = values[0]
        if name == "client_type":
            if value != "master":
                raise _bad(url, "client_type must be master: the dispatcher writes")
            continue
        if name in _FLOAT_OPTIONS or name.startswith("sentinel_"):
            try:
                value = float(value)
            except ValueError:
                raise _bad(url, f"option {name!r} must be a number of seconds") from None
        elif name == "min_other_sentinels" and not value.isdigit():
            raise _bad(url, "min_other_sentinels must be a whole number")
        out[name] = value
    return out


def master_client(url: str, redis_class, *, sentinel_password: str | None = None, **client_kwargs):
    """A `redis_class` client on the current primary of the URL's service, following failovers.
    `client_kwargs` (timeouts, retry, decoding) apply to the server connections; the URL's own
    socket options win, as in rq-dashboard."""
    from redis.sentinel import Sentinel

    spec = parse(url)
    register_secret(sentinel_password)
    sentinel_kwargs = {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT,
                       **spec.sentinel_options}
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    sentinel = Sentinel(list(spec.hosts), min_other_sentinels=spec.min_other_sentinels,
                        sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(spec.service, redis_class=redis_class, db=spec.db, password=spec.password,
                               **{**client_kwargs, **spec.client_options})


def dashboard_config(url: str, sentinel_password: str | None = None) -> dict:
    """rq-dashboard's configuration for `url`: a sentinel URL goes without its password, which (and
    the sentinels' one) rq-dashboard takes from its own settings; any other URL as it is."""
    if not is_sentinel(url):
        return {"RQ_DASHBOARD_REDIS_URL": url}
    spec = parse(url)
    return {"RQ_DASHBOARD_REDIS_URL": spec.without_password(), "RQ_DASHBOARD_REDIS_PASSWORD": spec.password,
            "RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD": sentinel_password}
