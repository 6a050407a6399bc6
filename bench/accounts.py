"""Cost per account: thousands of accounts on one provider, and what the paths that look at all of them pay.

    python bench/accounts.py [--accounts 2000] [--creates 40] [--ticks 10] [--idle-seconds 10]
    python bench/accounts.py --accounts 50 --creates 5 --ticks 2 --idle-seconds 1   # smoke variant

One private stack (embedded Redis, sandbox upstream). --logins Runway accounts are
registered with real sandbox logins; the rest are written as a login leaves them
(`AccountStore.save` with a session made here, then opened in the capacity table as
`upsert_account` does): thousands of sandbox logins would measure the sandbox. Then,
in this process, on the real code paths:

- a provider-shaped create, `POST /v1/runwayml/gen3turbo/create` (no account pinned),
  and a generic one, `POST /v1/runwayml/gen3turbo`, through the HTTP API in-process
  (FastAPI TestClient, the API process's own work): median ms each;
- one maintenance tick (`workers.maintenance.tick`, what the worker holding the
  maintenance lock runs every `DISPATCHER_MAINTENANCE_INTERVAL`): median ms;
- the scheduler view `GET /v1/runwayml/scheduler/available`: median ms;
- per tick and per create: sealed values opened (`Vault.open` calls: each also parses the
  JSON and re-registers its secrets for log redaction) and of those, the decryptions
  (Fernet decrypt calls: the vault's 1,024-entry cache saves one only while the values
  it sees fit in it, so a small run opens values without decrypting them);
- with --idle-seconds > 0: one real worker process (`python -m workers --processes 1`)
  idling with these accounts, its CPU use in percent of one core (its maintenance tick
  runs every second; measured before any generation exists, so it has nothing else to do).

The last line is machine-readable:

    accounts=<n> create_ms_p50=<x> generic_create_ms_p50=<x> tick_ms=<x> decrypts_per_tick=<n>
    decrypts_per_create=<n> opens_per_tick=<n> opens_per_create=<n> available_ms=<x> idle_cpu_pct=<x>
    (one line)
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Stack, children, cpu_seconds  # noqa: E402

PROVIDER = "runwayml"
LIFETIME = 30 * 86400.0  # seconds: seeded tokens never come due during a run


def seed(d, count: int, prefix: str = "seeded") -> list[str]:
    """`count` Runway accounts written as a successful login leaves them."""
    from dispatcher import providers
    from dispatcher.providers import Session

    spec = providers.get(PROVIDER)
    cap = d.core.capacity(PROVIDER)
    now = time.time()
    ids = []
    for i in range(count):
        email = f"{prefix}-{i:05d}@bench.example"
        token = f"{prefix}-token-{i:05d}-{'x' * 120}"
        session = Session(account_id=email, token=token, expires_at=now + LIFETIME, issued_at=now,
                          jwt={"token": token, "exp": now + LIFETIME, "iat": now, "id": i})
        d.core.accounts.save(spec, {"email": email, "password": f"{prefix}-password-{i:05d}"}, 2, session)
        cap.set_usable_until(email, d.core.usable_until_ms(spec, session))
        cap.set_account(email, 2)
        ids.append(email)
    return ids


class Counter:
    """Counts the vault's `open` calls and Fernet decryptions (calls on the real objects,
    behaviour unchanged)."""

    def __init__(self, d):
        self.opens = self.decrypts = 0
        vault, fernet = d.core.vault, d.core.vault._fernet
        real_open, real_decrypt = vault.open, fernet.decrypt

        def opened(token):
            self.opens += 1
            return real_open(token)

        def decrypted(token, *args, **kwargs):
            self.decrypts += 1
            return real_decrypt(token, *args, **kwargs)

        vault.open, fernet.decrypt = opened, decrypted

    def take(self, per: int = 1) -> tuple[float, float]:
        """(decryptions, opens) since the last take, divided by `per`."""
        counts, self.opens, self.decrypts = (self.decrypts / per, self.opens / per), 0, 0
        return counts


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure_ticks(d, counter: Counter, n: int) -> dict:
    from workers.maintenance import tick

    tick(d.core, watch_horizon=2.0)  # warm up: script cache, connections
    counter.take()
    times = timed(lambda: tick(d.core, watch_horizon=2.0), n)
    decrypts, opens = counter.take(n)
    return {"tick_ms": statistics.median(times), "decrypts_per_tick": decrypts, "opens_per_tick": opens}


def measure_idle_worker(stack: Stack, seconds: float) -> float:
    """CPU percent of one core used by an idle worker process (and its children) over `seconds`."""
    if seconds <= 0:
        return 0.0
    group = stack.workers(1)
    try:
        time.sleep(min(2.0, seconds))  # it takes the maintenance lock within a tick or two
        pids = group.pids + [c for p in group.pids for c in children(p)]
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(seconds)
        used = sum(cpu_seconds(p) for p in pids) - before
        group.check()
    finally:
        stack.stop_group(group)
    return 100.0 * used / seconds


def measure_api(d, counter: Counter, creates: int) -> dict:
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app

    out: dict = {}
    with TestClient(create_app(d), raise_server_exceptions=True) as api:
        api.headers["Authorization"] = f"Bearer {d.settings.api_tokens[0]}"

        def post(path: str, body: dict):
            res = api.post(path, json=body)
            if res.status_code != 200:
                raise RuntimeError(f"{path} answered {res.status_code}: {res.text[:300]}")

        post("/v1/runwayml/gen3turbo/create", {"text_prompt": "warm up"})
        counter.take()
        compat = timed(lambda: post("/v1/runwayml/gen3turbo/create", {"text_prompt": "bench"}), creates)
        out["decrypts_per_create"], out["opens_per_create"] = counter.take(creates)
        out["create_ms"] = statistics.median(compat)
        out["generic_ms"] = statistics.median(
            timed(lambda: post("/v1/runwayml/gen3turbo", {"promptText": "bench"}), creates))
        out["available_ms"] = statistics.median(timed(lambda: api.get("/v1/runwayml/scheduler/available"),
                                                      max(3, creates // 4)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=2000, help="accounts on one provider (Runway)")
    parser.add_argument("--logins", type=int, default=2, help="of those, registered with real sandbox logins")
    parser.add_argument("--creates", type=int, default=40, help="creates timed per route")
    parser.add_argument("--ticks", type=int, default=10, help="maintenance ticks timed")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle worker CPU window (0: skip)")
    args = parser.parse_args(argv)
    if args.accounts < 1 or not 0 <= args.logins <= args.accounts or args.creates < 1 or args.ticks < 1:
        parser.error("--accounts, --creates and --ticks must be >= 1, 0 <= --logins <= --accounts")

    with Stack(lease_ttl=30.0, maintenance_interval=1.0) as stack:
        d = stack.dispatcher()
        t0 = time.monotonic()
        stack.add_accounts(d, PROVIDER, count=args.logins, max_jobs=2, concurrency=2, duration=0)
        seed(d, args.accounts - args.logins)
        print(f"{args.accounts} {PROVIDER} accounts ({args.logins} by real logins) in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        counter = Counter(d)
        ticks = measure_ticks(d, counter, args.ticks)
        idle = measure_idle_worker(stack, args.idle_seconds)
        api = measure_api(d, counter, args.creates)
    report(args, ticks, api, idle)
    return 0


def report(args, ticks: dict, api: dict, idle: float) -> None:
    print(f"{'':<34}{'median':>10}   {'decrypted':>9} {'opened':>8}")
    print(f"{'maintenance tick':<34}{ticks['tick_ms']:>7.1f} ms   {ticks['decrypts_per_tick']:>9.0f} "
          f"{ticks['opens_per_tick']:>8.0f}")
    print(f"{'create, provider-shaped (no pin)':<34}{api['create_ms']:>7.1f} ms   "
          f"{api['decrypts_per_create']:>9.0f} {api['opens_per_create']:>8.0f}")
    print(f"{'create, generic route':<34}{api['generic_ms']:>7.1f} ms")
    print(f"{'GET scheduler/available':<34}{api['available_ms']:>7.1f} ms")
    print(f"{'idle worker CPU':<34}{idle:>7.1f} %    of one core" + ("" if args.idle_seconds > 0 else " (skipped)"))
    print(f"accounts={args.accounts} create_ms_p50={api['create_ms']:.1f} "
          f"generic_create_ms_p50={api['generic_ms']:.1f} tick_ms={ticks['tick_ms']:.1f} "
          f"decrypts_per_tick={ticks['decrypts_per_tick']:.0f} "
          f"decrypts_per_create={api['decrypts_per_create']:.0f} opens_per_tick={ticks['opens_per_tick']:.0f} "
          f"opens_per_create={api['opens_per_create']:.0f} available_ms={api['available_ms']:.1f} "
          f"idle_cpu_pct={idle:.1f}")


if __name__ == "__main__":
    sys.exit(main())
