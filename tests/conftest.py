"""Real servers, started once per session: an embedded Redis and the sandbox upstream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from dispatcher.redis_server import EmbeddedRedis

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


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
    )


@pytest.fixture
def dispatcher(r, settings, sandbox):
    from dispatcher.client import Dispatcher

    d = Dispatcher(settings.redis_url, settings)
    yield d
    d.close()


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
