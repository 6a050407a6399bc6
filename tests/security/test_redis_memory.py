"""Issue 15, finding 6 (memory): the embedded Redis runs with maxmemory and policy noeviction.
When it is full, a submission answers a clear 507 (HTTP) or raises a clear error (Python),
and nothing stored is evicted."""

from __future__ import annotations

import pytest
import redis

from dispatcher.ops.redis_server import EmbeddedRedis, resolve_url
from dispatcher.settings import Settings

TINY = "6mb"
ACCOUNT = {"email": "full@example.com", "password": "Full-pass-0123456789", "maxJobs": 2}


@pytest.fixture
def small_redis(tmp_path):
    """A dedicated embedded Redis with a tiny memory limit."""
    server = EmbeddedRedis(tmp_path / "small", extra_args=("--maxmemory", TINY))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(small_redis):
    """Points `r`, `settings`, `dispatcher` and `api` at the small server."""
    return small_redis.url


def fill(client) -> int:
    """Write 64 KiB values until Redis refuses one, then lower maxmemory to a whole number of
    MiB at least 1 MiB under what is used: buffers Redis frees later (a client's query buffer
    counts while a big value is read) cannot bring it back under the limit. Returns the limit."""
    for i in range(10_000):
        try:
            client.set(f"filler:{i}", b"x" * (64 * 1024))
        except redis.exceptions.OutOfMemoryError:
            break
    else:
        raise AssertionError("Redis never refused a write")
    limit_mib = client.info("memory")["used_memory"] // (1 << 20) - 1
    client.config_set("maxmemory", f"{limit_mib}mb")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "1")
    return limit_mib


@pytest.fixture
def full(dispatcher, sandbox, r, snapshot):
    """An account, a first generation, then Redis filled past its limit: (first, limit in MiB,
    every key and value before the probe)."""
    res = sandbox.post("/_sandbox/users", json={"provider": "runwayml", "concurrency": 2, **{
        k: ACCOUNT[k] for k in ("email", "password")}})
    assert res.status_code == 201, res.text
    dispatcher.upsert_account("runwayml", dict(ACCOUNT), ACCOUNT["email"])
    first = dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "before the limit"})
    with redis.Redis.from_url(dispatcher.core.redis_url) as client:
        limit_mib = fill(client)
    return first, limit_mib, snapshot(r)


def test_submit_over_http_answers_507_and_nothing_is_evicted(api, full, r, snapshot):
    first, limit_mib, before = full
    res = api.post("/v1/runwayml/gen3a_turbo", json={"promptText": "over the limit"})
    assert res.status_code == 507, res.text
    body = res.json()
    assert set(body) == {"error", "code"} and body["code"] == 507, body
    assert body["error"].startswith(f"Redis is out of memory (maxmemory {limit_mib} MiB, policy noeviction)")
    assert "nothing was changed" in body["error"]
    assert snapshot(r) == before, "a key was evicted or written"
    assert api.get(f"/v1/jobs/{first.id}").status_code == 200  # reads still work


def test_submit_in_python_raises_a_clear_error(dispatcher, full, r, snapshot):
    from dispatcher.errors import DispatcherError, StoreFull

    _, limit_mib, before = full
    with pytest.raises(StoreFull) as caught:
        dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "over the limit"})
    assert isinstance(caught.value, DispatcherError) and caught.value.status == 507
    assert caught.value.message.startswith(f"Redis is out of memory (maxmemory {limit_mib} MiB, policy noeviction)")
    assert snapshot(r) == before


def test_the_embedded_redis_has_the_configured_limit_and_never_evicts(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", redis_maxmemory="3mb")
    url = resolve_url(settings)  # how every command starts it
    try:
        with redis.Redis.from_url(url, decode_responses=True) as client:
            config = client.config_get("maxmemory*")
    finally:
        EmbeddedRedis(settings.data_dir).stop()
    assert int(config["maxmemory"]) == 3 * 1024 * 1024
    assert config["maxmemory-policy"] == "noeviction"
