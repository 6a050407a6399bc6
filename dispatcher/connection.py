"""Redis clients, built in one place with reconnect-and-retry behaviour.

Two clients per URL: ours decodes responses to str; RQ's does not (RQ
pickles job data). Both retry a dropped connection with backoff, so a Redis
restart is ridden out instead of crashing the process.

A `redis+sentinel://` URL (see `dispatcher.sentinel`) gives clients on the current primary of
its service, through redis-py's `Sentinel.master_for`: they follow a failover without a restart,
with the same retries (a request during the failover fails with a connection error: 503).

A transaction pipeline may be asked to wait for replicas (`wait_for(pipe, replicas, ms)`): after
its EXEC, on the same connection, it sends `WAIT` and records whether enough replicas
acknowledged (`confirmed`); a failed WAIT is never retried with the transaction.

Both turn Redis's "OOM command not allowed" refusal (maxmemory reached with
policy noeviction) into `RedisFull`: a `StoreFull` (HTTP 507) with a clear
message that is still a redis-py `OutOfMemoryError` for code catching Redis
errors.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import OutOfMemoryError
from redis.retry import Retry

from . import sentinel
from .errors import ConfigurationError, StoreFull
from .ops.redis_server import resolve_url  # the embedded server when DISPATCHER_REDIS_URL is unset

_RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError)
OOM_MARK = "OOM command not allowed"  # Redis 6 wraps it in a script error: match the text too


class RedisFull(StoreFull, OutOfMemoryError):
    """Redis reached maxmemory and refused a write (nothing evicted, nothing changed)."""


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, OutOfMemoryError) or (isinstance(exc, redis.ResponseError) and OOM_MARK in str(exc))


def store_full(client: redis.Redis | None = None) -> RedisFull:
    """The error for a refused write, naming the limit when Redis tells it."""
    limit = "maxmemory reached"
    try:
        if client is not None:
            config = {_text(k): _text(v) for k, v in client.config_get("maxmemory*").items()}
            if int(config.get("maxmemory", 0)):
                limit = f"maxmemory {_human(int(config['maxmemory']))}, policy {config.get('maxmemory-policy')}"
    except (redis.RedisError, ValueError):
        pass  # CONFIG may be renamed or denied (managed Redis): the plain message will do
    return RedisFull(
        f"Redis is out of memory ({limit}); nothing was changed and nothing was evicted. Free memory "
        "(finished generations expire after DISPATCHER_RESULT_TTL) or raise the limit "
        "(DISPATCHER_REDIS_MAXMEMORY for the embedded Redis)")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{round(size / scale, 2):g} {unit}"
    return f"{size} bytes"


class _Pipeline(Pipeline):
    replicas = 0  # WAIT for this many replicas after EXEC (0: no WAIT)
    wait_ms = 0
    confirmed: bool | None = None  # after execute: did enough replicas acknowledge? (None: not asked)

    def _execute_transaction(self, connection, commands, raise_on_error):
        result = super()._execute_transaction(connection, commands, raise_on_error)
        if self.replicas > 0:
            try:  # the writes just made on this connection: WAIT counts replicas that have them
                connection.send_command("WAIT", self.replicas, self.wait_ms)
                self.confirmed = int(connection.read_response()) >= self.replicas
            except (redis.RedisError, ValueError):
                self.confirmed = False  # never raised: the retry would run the transaction again
        return result

    def execute(self, raise_on_error: bool = True):
        try:
            return super().execute(raise_on_error)
        except redis.ResponseError as exc:
            if is_out_of_memory(exc):
                raise store_full(redis.Redis(connection_pool=self.connection_pool)) from None
            raise


class _Redis(redis.Redis):
    def execute_command(self, *args, **options):
        try:
            return super().execute_command(*args, **options)
        except redis.ResponseError as exc:
            if is_out_of_memory(exc) and not isinstance(exc, RedisFull):
                raise store_full(self) from None
            raise

    def pipeline(self, transaction=True, shard_hint=None) -> Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def wait_for(pipe: Pipeline, replicas: int, wait_ms: int) -> Pipeline:
    """Have the transaction `pipe` (of a client from `connect`) WAIT for `replicas` replicas, at most
    `wait_ms` ms, after its EXEC; `pipe.confirmed` then tells. `replicas` 0: nothing changes."""
    if replicas > 0:
        if not isinstance(pipe, _Pipeline) or not pipe.transaction:
            raise TypeError("wait_for needs a transaction pipeline of a client from dispatcher.connection")
        pipe.replicas, pipe.wait_ms = replicas, wait_ms
    return pipe


def _client(url: str, *, decode: bool, sentinel_password: str | None = None) -> redis.Redis:
    options = dict(
        decode_responses=decode,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 4),
        retry_on_error=list(_RETRY_ERRORS),
    )
    if sentinel.is_sentinel(url):
        return sentinel.master_client(url, _Redis, sentinel_password=sentinel_password, **options)
    try:
        return _Redis.from_url(url, **options)
    except ValueError as exc:  # redis-py's word on a malformed URL; the URL shown masked
        shown = sentinel.shown(url)
        raise ConfigurationError(f"DISPATCHER_REDIS_URL {shown} is not a Redis URL: "
                                 f"{str(exc).replace(url, shown)}") from None


def connect(url: str, *, sentinel_password: str | None = None) -> redis.Redis:
    """Our client (responses decoded to str). `sentinel_password`: the sentinels' own password
    (`DISPATCHER_REDIS_SENTINEL_PASSWORD`), for a `redis+sentinel://` URL."""
    return _client(url, decode=True, sentinel_password=sentinel_password)


def connect_rq(url: str, *, sentinel_password: str | None = None) -> redis.Redis:
    """RQ's client (raw bytes: RQ pickles job data)."""
    return _client(url, decode=False, sentinel_password=sentinel_password)


def url_for(settings) -> str:
    return resolve_url(settings)
