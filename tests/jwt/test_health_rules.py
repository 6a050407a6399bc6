"""Pure decisions of account health and the JWT margin: `judge`, `backoff`, `refresh_margin`,
and `FailureWindow` on the real Redis with injected time."""

from __future__ import annotations

import random

import pytest
import redis

from dispatcher.errors import UpstreamError
from dispatcher.health import COOLDOWN, FAIL, FLAG, MIN_COOLDOWN, REFRESH, RETRY, FailureWindow, backoff, judge
from dispatcher.providers import Session
from dispatcher.settings import Settings
from dispatcher.tokens import refresh_margin, transit_guard

S = Settings(cooldown_429=30.0, cooldown_596=3 * 3600.0)


def err(status, message="", retry_after=None):
    return UpstreamError(message, status=status, retry_after=retry_after)


# -- judge ------------------------------------------------------------------------------


def test_401_asks_for_a_refresh():
    v = judge(err(401, "Unauthorized"), S)
    assert (v.action, v.reason, v.flag, v.cooldown) == (REFRESH, "Unauthorized", None, 0.0)
    assert judge(err(401), S).reason == "Unauthorized"


def test_429_cools_down_for_retry_after_else_the_setting():
    v = judge(err(429, "Too many requests", retry_after=7.5), S)
    assert (v.action, v.cooldown, v.flag) == (COOLDOWN, 7.5, None)
    assert v.reason == "Too many requests"
    assert judge(err(429), S).cooldown == 30.0
    assert judge(err(429), S.with_(cooldown_429=2.0)).cooldown == 2.0
    # Retry-After: 0 (or nonsense below it) never becomes a hot loop
    assert judge(err(429, retry_after=0), S).cooldown == MIN_COOLDOWN
    assert judge(err(429, retry_after=-5), S).cooldown == 30.0


def test_412_flags_without_hold():
    v = judge(err(412, "Insufficient credits"), S)
    assert (v.action, v.cooldown) == (FLAG, 0.0)
    assert v.flag == "Out of credits (412): Insufficient credits"
    assert judge(err(412), S).flag == "Out of credits (412)"


def test_596_flags_with_a_hold_from_settings():
    v = judge(err(596, "Account on hold"), S)
    assert (v.action, v.cooldown) == (FLAG, 3 * 3600.0)
    assert v.flag == "Account on hold (596): Account on hold"
    assert judge(err(596), S.with_(cooldown_596=60.0)).cooldown == 60.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 599])
def test_5xx_and_timeouts_retry(status):
    v = judge(err(status, "Bad gateway"), S)
    assert (v.action, v.reason, v.flag) == (RETRY, "Bad gateway", None)
    assert judge(err(status), S).reason == f"upstream error {status}"


@pytest.mark.parametrize("status,reason", [(422, "Prompt rejected by moderation"), (400, "bad"), (404, "Not found")])
def test_other_answers_fail_the_generation_with_the_upstream_reason(status, reason):
    v = judge(err(status, reason), S)
    assert (v.action, v.reason, v.flag, v.cooldown) == (FAIL, reason, None, 0.0)


# -- backoff ----------------------------------------------------------------------------


def test_backoff_doubles_within_jittered_bounds_and_is_capped():
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 30.0), (10_000, 30.0)]:
        draws = [backoff(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= x <= ceiling for x in draws), (attempt, min(draws), max(draws))
        assert max(draws) - min(draws) > ceiling / 4  # jittered, not a constant
    assert all(0.25 <= backoff(a, rng=rng) <= 0.5 for a in (0, -3))
    assert backoff(3, base=0.1, cap=0.3, rng=rng) <= 0.3


def test_backoff_is_reproducible_with_a_seeded_rng():
    assert [backoff(a, rng=random.Random(1)) for a in range(1, 6)] == \
        [backoff(a, rng=random.Random(1)) for a in range(1, 6)]


# -- the refresh margin -----------------------------------------------------------------


def session(lifetime: float, issued: float = 1_000_000.0) -> Session:
    return Session(account_id="a", token="t", expires_at=issued + lifetime, issued_at=issued, jwt={})


def test_margin_is_ten_percent_or_five_minutes_for_real_tokens():
    s = Settings()
    assert refresh_margin(s, session(3600)) == pytest.approx(300.0)  # min(300, 360)
    assert refresh_margin(s, session(1200)) == pytest.approx(120.0)  # 10 %
    assert refresh_margin(s, session(7 * 86400)) == pytest.approx(300.0)


def test_margin_floor_covers_the_transit_of_short_tokens():
    s = Settings()
    assert refresh_margin(s, session(3)) == pytest.approx(1.0)  # 10 % = 0.3 s would be too thin
    assert transit_guard(s, session(3)) == pytest.approx(1.0)
    assert refresh_margin(s, session(1)) == pytest.approx(0.5)  # never more than half the lifetime
    assert refresh_margin(s, session(0)) == 0.0
    assert refresh_margin(s.with_(refresh_margin_ratio=0.5), session(10)) == pytest.approx(5.0)
    assert refresh_margin(s.with_(refresh_margin=2.0), session(3600)) == pytest.approx(2.0)


# -- FailureWindow ----------------------------------------------------------------------


@pytest.mark.parametrize("decode", [False, True])
def test_failure_window_trips_over_half_failed_then_restarts(r, redis_url, decode):
    client = redis.Redis.from_url(redis_url, decode_responses=decode)
    w = FailureWindow(client, window=60.0, min_calls=6, threshold=0.5)
    key, t = "dsp:{test}:failures:a", 1_000.0
    # fewer than min_calls never trips, however bad
    assert not any(w.record(key, False, now=t + i) for i in range(5))
    assert w.record(key, True, now=t + 5) is True  # 5 of 6 failed (this one succeeded)
    assert client.exists(key, key + ":err") == 0  # the window restarts after tripping
    outcomes = [True, True, True, False, False, False]  # exactly half: not over
    assert [w.record(key, ok, now=t + i) for i, ok in enumerate(outcomes)] == [False] * 6
    assert w.record(key, False, now=t + 6) is True  # 4 of 7 > 50 %
    client.close()


def test_failure_window_forgets_calls_older_than_the_window(r, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    w = FailureWindow(client, window=10.0, min_calls=4, threshold=0.5)
    key = "dsp:{test}:failures:b"
    for i in range(4):
        assert w.record(key, False, now=100.0 + i) is (i == 3)  # the 4th failure trips
    for i in range(3):
        w.record(key, False, now=200.0 + i)  # three recent failures...
    assert w.record(key, True, now=300.0) is False  # ...all older than 10 s by now: 1 call in window
    assert client.zcard(key) == 1
    assert 0 < client.ttl(key) <= 15
    client.close()
