"""Stress: 8 processes x 2,000 random operations against one Redis.

While the workers run, a monitor thread samples the provider's capacity keys
atomically and checks at every sample that no account runs more than its
maxJobs (fixed during the run) and that every slot counted in `used` has exactly
one holder and one lease. At the end, the slots are either leased or free (no
leak, no double count), and draining every lease leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from collections import Counter

import redis

from dispatcher import keys
from dispatcher.capacity import Capacity
from dispatcher.errors import NoCapacity

P = "stress"
LIMITS = {"a0": 1, "a1": 2, "a2": 3, "a3": 4, "a4": 5}
PROCESSES = 8
OPS = 2_000


def worker(url: str, index: int, results) -> None:
    client = redis.Redis.from_url(url)
    rnd = random.Random(index)
    cap = Capacity(client, P, lease_ttl_ms=60_000, rng=random.Random(1000 + index))
    held: list[str] = []
    waiting: dict[str, str | None] = {}
    issued: list[str] = []
    stats: Counter = Counter()

    def adopt(admissions):
        """Whoever receives an admission runs its work (as the caller enqueues it)."""
        for a in admissions:
            held.append(a.generation_id)
            waiting.pop(a.generation_id, None)
            stats["admissions"] += 1

    for i in range(OPS):
        x = rnd.random()
        if x < 0.30:
            g = f"w{index}-{i}"
            issued.append(g)
            pin = rnd.choice(list(LIMITS)) if rnd.random() < 0.1 else None
            try:
                result = cap.acquire(g, account=pin, wait=rnd.random() < 0.5)
            except NoCapacity as refused:
                adopt(refused.admitted)
                stats["refused"] += 1
                continue
            adopt(result.admitted)
            if result.status == "waiting":
                waiting[g] = pin
            stats[result.status] += 1
        elif x < 0.70:
            if held and rnd.random() < 0.95:
                g = held.pop(rnd.randrange(len(held)))
            elif issued:
                g = rnd.choice(issued)  # double or stale release: must be a no-op
            else:
                continue
            adopt(cap.release(g))
            stats["release"] += 1
        elif x < 0.80:
            if held:
                # mostly keep alive; sometimes let it run out so that reap has work
                cap.renew(rnd.choice(held), ttl_ms=1 if rnd.random() < 0.3 else 60_000)
                stats["renew"] += 1
        elif x < 0.88:
            reaped, admitted = cap.reap(limit=20)
            adopt(admitted)
            stats["reaped"] += len(reaped)
        elif x < 0.93:
            if waiting:
                g = rnd.choice(list(waiting))
                if cap.cancel_waiting(g, waiting[g]):
                    stats["canceled"] += 1
                del waiting[g]
        else:
            adopt(cap.pump())
            stats["pump"] += 1
    results.put(dict(stats))
    client.close()


def atomic_counts(client):
    p = client.pipeline(transaction=True)
    p.hgetall(keys.used(P)).hlen(keys.holder(P)).zcard(keys.leases(P)).hlen(keys.started(P))
    used, holders, leases, started = p.execute()
    return {k.decode(): int(v) for k, v in used.items()}, holders, leases, started


def test_stress_never_oversubscribes_and_leaks_nothing(r, redis_url):
    cap = Capacity(r, P)
    for a, n in LIMITS.items():
        cap.set_account(a, n)

    stop = threading.Event()
    samples: list[int] = []
    problems: list[str] = []

    def monitor():
        client = redis.Redis.from_url(redis_url)
        watcher = Capacity(client, P)
        while not stop.is_set():
            for a, row in watcher.snapshot()["accounts"].items():
                if row["executing"] > LIMITS[a] or row["maxJobs"] != LIMITS[a]:
                    problems.append(f"{a}: {row}")
            used, holders, leases, started = atomic_counts(client)
            if not sum(used.values()) == holders == leases == started:
                problems.append(f"used {used} holders {holders} leases {leases} started {started}")
            samples.append(1)
            stop.wait(0.002)
        client.close()

    # spawn, not fork: the test process may run threads (session servers) that a fork would copy mid-state
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(redis_url, i, results), daemon=True) for i in range(PROCESSES)]
    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    try:
        for proc in procs:
            proc.start()
        stats = Counter()
        for _ in procs:
            stats.update(results.get(timeout=120))
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        stop.set()
        thread.join(timeout=30)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    assert not problems, problems[:5]
    assert len(samples) > 10
    print(f"{len(samples)} samples; operations: {dict(stats)}")
    # the run exercised every path
    for kind in ("admitted", "waiting", "refused", "release", "renew", "reaped", "pump", "canceled"):
        assert stats[kind] > 0, (kind, stats)

    # at rest: every slot is leased or free, and the counts agree key by key
    used, holders, leases, started = atomic_counts(r)
    holder = {g.decode(): a.decode() for g, a in r.hgetall(keys.holder(P)).items()}
    assert used == dict(Counter(holder.values()))
    assert sum(used.values()) == holders == leases == started
    assert all(used.get(a, 0) <= n for a, n in LIMITS.items())
    queued = [g.decode() for g in r.lrange(keys.waiting(P), 0, -1)]
    for a in LIMITS:
        queued += [g.decode() for g in r.lrange(keys.pinned(P, a), 0, -1)]
    assert not set(queued) & set(holder)
    assert len(queued) == len(set(queued))

    # drain: releasing every holder admits the waiters, until nothing is left
    for _ in range(1000):
        held = r.hkeys(keys.holder(P))
        if not held:
            break
        for g in held:
            cap.release(g.decode())
    assert r.hlen(keys.holder(P)) == 0
    assert r.llen(keys.waiting(P)) == 0 and r.scard(keys.pinned_lines(P)) == 0
    assert not r.exists(keys.used(P), keys.leases(P), keys.started(P))
