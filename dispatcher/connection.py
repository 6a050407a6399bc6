"""Redis clients, built in one place with reconnect-and-retry behaviour.

Two clients per URL: ours decodes responses to str; RQ's does not (RQ
pickles job data). Both retry a dropped connection with backoff, so a Redis
restart is ridden out instead of crashing the process.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .redis_server import resolve_url

_RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError)


def _client(url: str, *, decode: bool) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 4),
        retry_on_error=list(_RETRY_ERRORS),
    )


def connect(url: str) -> redis.Redis:
    return _client(url, decode=True)


def connect_rq(url: str) -> redis.Redis:
    return _client(url, decode=False)


def url_for(settings) -> str:
    return resolve_url(settings)
