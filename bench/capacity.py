"""Benchmark of the capacity semaphore against a private embedded Redis.

    python bench/capacity.py [--seconds 2] [--repeat 3]

Measures, in one run: Redis PING round trip; acquire, release and
acquire+release pair latency (median and p99, µs); the acquire/PING ratio
(target <= 1.5: an acquire should cost about one round trip; each acquire and
release is timed right after a PING, so the two share the machine's state); and pairs per
second with 1 and with 8 client processes (target >= 5,000/s with 8 on a
2-core machine). Five accounts with ample maxJobs, so every acquire is admitted.

The same figures again, in the same rounds, with the admission policy at work (issue 19): each
acquire carries one of 10 tenants and one of 3 priorities, and 30 waiting lines (10 more
tenants x 3 priorities, held at a cap of 0) stand beside them. Until the scripts learned to park
the lines of a tenant at its cap (`dsp:{p}:plines`), every pump looked at those 30 line heads
before it found nothing to admit; now the first pump parks them and later ones skip them, so
what this measures is the tenant bookkeeping of every admission and release plus a pump over
parked lines. Not measured here: lines whose tenant has room but whose heads cannot be admitted
(every free account quarantined for their operation), which each pump still reads. Target:
within 20 % of the single-line figures.
Each figure is the median over --repeat rounds. The last line is machine-readable:

    acquire_over_ping=<x> pairs_per_s_1=<y> pairs_per_s_8=<z> policy_acquire_over_ping=<x'>
    policy_pairs_per_s_1=<y'> policy_pairs_per_s_8=<z'> policy_ratio_8=<z'/z>
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from dispatcher.capacity import Capacity  # noqa: E402
from dispatcher.ops.redis_server import EmbeddedRedis  # noqa: E402

PROVIDER, POLICY_PROVIDER = "bench", "bench-policy"
ACCOUNTS = ["a@x", "b@x", "c@x", "d@x", "e@x"]
TENANTS, PRIORITIES = [f"t{i}" for i in range(10)], (1, 5, 9)


def kind(provider: str, i: int) -> dict:
    """The acquire's priority and tenant: none on the plain provider, one of 10 x 3 on the policy one."""
    if provider == PROVIDER:
        return {}
    return {"tenant": TENANTS[i % len(TENANTS)], "priority": PRIORITIES[i % len(PRIORITIES)]}


def setup(client, provider: str) -> None:
    cap = Capacity(client, provider)
    for a in ACCOUNTS:
        cap.set_account(a, 10**9)
    if provider == POLICY_PROVIDER:  # 30 lines that never move: every pump looks at their heads
        held = [f"held{i}" for i in range(10)]
        cap.set_policy(caps={t: 0 for t in held})
        for t in held:
            for p in PRIORITIES:
                cap.acquire(f"backlog-{t}-{p}", tenant=t, priority=p)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn, n: int, ping=None, pings: list | None = None) -> list[float]:
    """Per-call latency in µs over n calls; with `ping`, each call is preceded by a timed
    PING appended to `pings`, so both are measured under the same conditions (on a
    shared machine the latency drifts within seconds: a ratio of separate blocks drifts too)."""
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        if ping is not None:
            t0 = clock()
            ping()
            pings.append((clock() - t0) / 1000)
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000)
    return out


def latencies(url: str, n: int, tag: str, provider: str = PROVIDER) -> dict[str, list[float]]:
    client = redis.Redis.from_url(url)
    cap = Capacity(client, provider)
    for i in range(200):  # warm up: connection, script cache
        client.ping()
        cap.acquire(f"warm{tag}-{i}", **kind(provider, i))
        cap.release(f"warm{tag}-{i}")
    out = {"ping": []}
    # acquire n, then release the same n, each call after a PING: each measured alone, with
    # the time Redis itself spends in the script (INFO commandstats) beside it
    client.config_resetstat()
    out["acquire"] = timed(lambda i: cap.acquire(f"l{tag}-{i}", **kind(provider, i)), n, client.ping, out["ping"])
    out["server_acquire"] = [_script_usec(client)]
    client.config_resetstat()
    out["release"] = timed(lambda i: cap.release(f"l{tag}-{i}"), n, client.ping, out["ping"])
    out["server_release"] = [_script_usec(client)]

    def pair(i):
        cap.acquire(f"p{tag}-{i}", **kind(provider, i))
        cap.release(f"p{tag}-{i}")

    out["pair"] = timed(pair, n)
    client.close()
    return out


def _script_usec(client) -> float:
    return float(client.info("commandstats").get("cmdstat_evalsha", {}).get("usec_per_call", 0.0))


def pairs_worker(url: str, index: int, seconds: float, start, results, provider: str = PROVIDER) -> None:
    client = redis.Redis.from_url(url)
    cap = Capacity(client, provider)
    cap.acquire(f"w{index}-warm", **kind(provider, index))
    cap.release(f"w{index}-warm")
    start.wait()
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        g = f"w{index}-{count}"
        cap.acquire(g, **kind(provider, index + count))
        cap.release(g)
        count += 1
    results.put(count)
    client.close()


def pairs_per_second(url: str, processes: int, seconds: float, provider: str = PROVIDER) -> float:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=pairs_worker, args=(url, i, seconds, start, results, provider))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    time.sleep(0.3)  # let every process connect and warm up
    start.set()
    total = sum(results.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    return total / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is their median")
    parser.add_argument("--samples", type=int, default=3000, help="calls per latency round")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="capacity-bench-") as tmp:
        server = EmbeddedRedis(tmp)
        url = server.start()
        try:
            client = redis.Redis.from_url(url)
            setup(client, PROVIDER)
            setup(client, POLICY_PROVIDER)
            rounds = []
            for r in range(args.repeat):  # both modes in every round, side by side
                row = {}
                for provider, prefix in ((PROVIDER, ""), (POLICY_PROVIDER, "policy_")):
                    lat = latencies(url, args.samples, f"{prefix}{r}", provider)
                    row.update({
                        **{f"{prefix}{k}_med": statistics.median(v) for k, v in lat.items()},
                        **{f"{prefix}{k}_p99": percentile(v, 0.99) for k, v in lat.items()},
                        f"{prefix}ratio": statistics.median(lat["acquire"]) / statistics.median(lat["ping"]),
                        f"{prefix}pps1": pairs_per_second(url, 1, args.seconds, provider),
                        f"{prefix}pps8": pairs_per_second(url, 8, args.seconds, provider),
                    })
                row["policy_share_8"] = row["policy_pps8"] / row["pps8"]
                rounds.append(row)
            leftover = Capacity(client, PROVIDER).snapshot()
            backlog = Capacity(client, POLICY_PROVIDER).snapshot()
            client.close()
        finally:
            server.stop()

    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    spread = {k: (min(r[k] for r in rounds), max(r[k] for r in rounds)) for k in rounds[0]}
    print(f"capacity bench: {args.repeat} rounds, {args.samples} calls per latency round, "
          f"{args.seconds:g} s per throughput round, {len(ACCOUNTS)} accounts; medians over rounds")
    print(f"{'operation':<22}{'median µs':>12}{'p99 µs':>12}")
    for name in ("ping", "acquire", "release", "pair"):
        print(f"{name:<22}{med[name + '_med']:>12.1f}{med[name + '_p99']:>12.1f}")
    print(f"{'  in Redis: acquire':<22}{med['server_acquire_med']:>12.1f}   (script time per call, INFO commandstats)")
    print(f"{'  in Redis: release':<22}{med['server_release_med']:>12.1f}")
    print(f"{'acquire / PING':<22}{med['ratio']:>12.2f}   (target <= 1.5; rounds {spread['ratio'][0]:.2f}-{spread['ratio'][1]:.2f})")
    print(f"{'pairs/s, 1 process':<22}{med['pps1']:>12.0f}   (rounds {spread['pps1'][0]:.0f}-{spread['pps1'][1]:.0f})")
    print(f"{'pairs/s, 8 processes':<22}{med['pps8']:>12.0f}   (target >= 5000; rounds {spread['pps8'][0]:.0f}-{spread['pps8'][1]:.0f})")
    print("with 10 tenants x 3 priorities, beside 30 waiting lines:")
    for name in ("acquire", "release", "pair"):
        print(f"{name:<22}{med['policy_' + name + '_med']:>12.1f}{med['policy_' + name + '_p99']:>12.1f}")
    print(f"{'acquire / PING':<22}{med['policy_ratio']:>12.2f}   (single line: {med['ratio']:.2f})")
    print(f"{'pairs/s, 1 process':<22}{med['policy_pps1']:>12.0f}   (single line: {med['pps1']:.0f})")
    print(f"{'pairs/s, 8 processes':<22}{med['policy_pps8']:>12.0f}   (single line: {med['pps8']:.0f}; "
          f"share {med['policy_share_8']:.2f}, target >= 0.80; rounds {spread['policy_share_8'][0]:.2f}-"
          f"{spread['policy_share_8'][1]:.2f})")
    busy = sum(row["executing"] for row in leftover["accounts"].values())
    busy += sum(row["executing"] for row in backlog["accounts"].values())
    print(f"{'slots held at the end':<22}{busy:>12d}   (expected 0; {backlog['waiting']} held waiters, expected 30)")
    print(f"acquire_over_ping={med['ratio']:.2f} pairs_per_s_1={med['pps1']:.0f} pairs_per_s_8={med['pps8']:.0f} "
          f"policy_acquire_over_ping={med['policy_ratio']:.2f} policy_pairs_per_s_1={med['policy_pps1']:.0f} "
          f"policy_pairs_per_s_8={med['policy_pps8']:.0f} policy_ratio_8={med['policy_share_8']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
