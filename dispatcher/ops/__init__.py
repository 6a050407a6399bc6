"""Operations: what runs and watches the dispatcher rather than what decides.

- `cli`: the `dispatcher` command (serve, worker, sandbox, redis, accounts, status, demo, dashboard);
- `redis_server`: the embedded `redis-server` in the data directory (also how `connection`
  resolves the Redis URL when `DISPATCHER_REDIS_URL` is unset);
- `status`: `dispatcher status`, the table view of `dispatcher.overview.collect`;
- `dashboard`: rq-dashboard behind Host/Origin checks and basic auth;
- `demo` (with `demo_view`, `processes`): `make demo`.

The core never imports this package, with one exception: `dispatcher.connection` resolves the
embedded server through `redis_server`. Nothing here is imported at package import time.
"""
