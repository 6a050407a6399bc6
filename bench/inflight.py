"""1,000 minutes-long generations in flight at once, held by 2 worker processes.

    python bench/inflight.py [--generations 1000] [--duration 120] [--workers 2]
    python bench/inflight.py --jobs 200 --duration 20        # smoke variant

One private stack (embedded Redis, sandbox upstream). Accounts with maxJobs 10
each, enough of them for every job to hold a slot at once (total maxJobs >=
--jobs), each sandbox user allowed 10 concurrent jobs; every generation runs
--duration seconds upstream. Two dispatcher worker processes (`python -m workers
--processes 1`, as deployed) run every step. The provider is Runway by default:
minutes-long generations are videos, and Runway's spec polls them with its own
backoff (1, 2, 3, 5, then every 10 s); `--provider riffusion` polls every 5 s in
the tail (the default backoff), twice the poll load.

While it runs, every 0.5 s it samples: generations running upstream (the
sandbox's own count, summed over users: the oracle) and slots held (capacity
snapshot), and the workers' resident memory. Reported:

- inflight: the peak number running upstream at one instant (target: all jobs);
- rss_mb: the workers' peak RSS (VmHWM), summed (target < 300 MB);
- poll lag p95: how late poll steps start against the time their backoff set
  (recorded by the workers with DISPATCHER_RECORD_POLL_LAG=1; target < 2 s);
- the RSS of one plain RQ worker process (`bench._plain`, same worker class, after
  running a job): plain RQ holds a worker for the whole generation, so the same
  load needs one process per in-flight job.

Checks: every generation completes, the sandbox counts 0 violations and 0
duplicate submissions. The last line is machine-readable:

    inflight=<n> rss_mb=<x> poll_lag_p50_s=… poll_lag_p95_s=<y> poll_lag_p99_s=… polls=<n>
    cpu_ms_per_poll=<z> steady_inflight=<n> steady_cpu_per_s=<c>

`cpu_ms_per_poll` is the workers' CPU over the whole run (starts included) divided by the
poll steps recorded: what one poll of a generation in flight costs a worker, all told.
`steady_cpu_per_s` is the workers' CPU seconds per second while at least 90 % of the peak
ran upstream and before the first could end (`steady_inflight`, their mean number):
bench/inflight_scaling.py plots it against generations in flight.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from pathlib import Path

import structlog

# the bench process itself logs only warnings (a line per submit would skew nothing but
# would flood the terminal); set before dispatcher modules bind their loggers
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (PLAIN_QUEUE, Stack, children, cpu_seconds, peak_rss_mb, percentile,  # noqa: E402
                           pss_mb, rss_mb)

OPERATIONS = {"runwayml": "gen3a_turbo", "riffusion": "music/generate"}
PROMPT = {"runwayml": "promptText", "riffusion": "prompt"}
MAX_JOBS = 10  # per account: the top of both providers' 1-10 range


class Sampler(threading.Thread):
    """Samples running generations (sandbox, capacity) and worker memory every `interval` s."""

    def __init__(self, stack, d, provider: str, pids: list[int], interval: float = 0.5):
        super().__init__(name="sampler", daemon=True)
        self.stack, self.d, self.provider, self.pids, self.interval = stack, d, provider, pids, interval
        self.stop = threading.Event()
        self.peak_upstream = 0
        self.peak_slots = 0
        self.peak_rss_sum = 0.0
        self.first_full: float | None = None
        self.target = 0
        self.errors = 0
        self.cpu: list[tuple[float, int, float]] = []  # (time, running upstream, workers' CPU seconds so far)

    def run(self) -> None:
        with self.stack.admin() as admin:
            while not self.stop.wait(self.interval):
                try:
                    users = admin.get("/_sandbox/stats", params={"provider": self.provider}).json()["users"]
                    upstream = sum(u["running"] for u in users.values())
                    snap = self.d.core.capacity(self.provider).snapshot()
                    slots = sum(a["executing"] for a in snap["accounts"].values())
                except Exception:
                    self.errors += 1
                    continue
                self.peak_upstream = max(self.peak_upstream, upstream)
                self.peak_slots = max(self.peak_slots, slots)
                if self.first_full is None and self.target and upstream >= self.target:
                    self.first_full = time.time()
                self.peak_rss_sum = max(self.peak_rss_sum, sum(rss_mb(p) for p in self.pids))
                self.cpu.append((time.time(), upstream, sum(cpu_seconds(p) for p in self.pids)))

    def steady_cpu(self, until: float) -> tuple[float, float]:
        """(mean generations running upstream, workers' CPU seconds per second) from the moment
        90 % of the peak ran until `until` (before the first could end): the cost of holding them."""
        window = [c for c in self.cpu if c[1] >= 0.9 * self.peak_upstream and c[0] < until]
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return float("nan"), float("nan")
        held = sum(c[1] for c in window) / len(window)
        return held, (window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0])


def plain_worker_rss(stack, d, token: str) -> tuple[float, float]:
    """(RSS, peak RSS) in MB of one plain RQ worker process after it ran one short job
    (a Riffusion one: the plain job speaks Riffusion; the process is the same either way)."""
    from rq import Queue

    group = stack.workers(1, plain=True)
    try:
        job = Queue(PLAIN_QUEUE, connection=d.core.rq).enqueue(
            "bench._plain.plain_job", stack.upstream_url, token, OPERATIONS["riffusion"],
            {"prompt": f"plain rss probe {time.time()}", "sandbox_duration": 0}, f"rss-{time.time()}",
            poll_interval=0.05)
        deadline = time.monotonic() + 60
        while job.get_status(refresh=True) not in ("finished", "failed"):
            group.check()
            if time.monotonic() > deadline:
                raise TimeoutError("the plain RQ probe job did not finish")
            time.sleep(0.05)
        pid = group.pids[0]
        return rss_mb(pid), peak_rss_mb(pid)
    finally:
        stack.stop_group(group)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generations", "--jobs", dest="jobs", type=int, default=1000,
                        help="generations, all in flight at once")
    parser.add_argument("--duration", type=float, default=120.0, help="upstream seconds per generation")
    parser.add_argument("--workers", type=int, default=2, help="dispatcher worker processes")
    parser.add_argument("--provider", choices=sorted(OPERATIONS), default="runwayml")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for the last one "
                        "(default: duration + 300)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.duration <= 0:
        parser.error("--jobs and --workers must be >= 1, --duration > 0")
    accounts = math.ceil(args.jobs / MAX_JOBS)
    timeout = args.timeout if args.timeout is not None else args.duration + 300

    with Stack(lease_ttl=30.0, maintenance_interval=1.0,
               extra_env={"DISPATCHER_RECORD_POLL_LAG": "1"}) as stack:
        d = stack.dispatcher()
        provider = args.provider
        t0 = time.monotonic()
        stack.add_accounts(d, provider, count=accounts, max_jobs=MAX_JOBS, concurrency=MAX_JOBS,
                           duration=args.duration)
        print(f"{accounts} {provider} accounts registered (total maxJobs {accounts * MAX_JOBS}) in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        probe = stack.add_accounts(d, "riffusion", count=1, max_jobs=1, concurrency=1, duration=0, prefix="probe")
        plain_rss, plain_peak = plain_worker_rss(stack, d, d.core.token_for("riffusion", probe[0][0]))

        group = stack.workers(args.workers)
        pids = group.pids
        sampler = Sampler(stack, d, provider, pids)
        sampler.target = args.jobs
        sampler.start()
        started = time.time()
        ids = [d.submit(provider, OPERATIONS[provider], {PROMPT[provider]: f"inflight {i} {started}",
                                                         "sandbox_duration": args.duration}).id
               for i in range(args.jobs)]
        submitted = time.time() - started
        print(f"{args.jobs} generations submitted in {submitted:.1f} s", flush=True)

        keys = [f"dsp:{{{provider}}}:gen:{gid}" for gid in ids]
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while True:
            pipe = d.core.r.pipeline(transaction=False)
            for k in keys:
                pipe.hget(k, "state")
            states = pipe.execute()
            done = sum(1 for s in states if s in ("completed", "failed", "canceled"))
            if done == len(ids):
                break
            group.check()
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{done}/{len(ids)} generations done after {timeout:.0f} s")
            if now - last_report >= 10:
                print(f"  t={time.time() - started:5.0f} s  running upstream (peak) {sampler.peak_upstream}  "
                      f"done {done}  workers RSS {sum(rss_mb(p) for p in pids):.0f} MB", flush=True)
                last_report = now
            time.sleep(1.0)
        elapsed = time.time() - started
        sampler.stop.set()
        sampler.join(timeout=10)

        pipe = d.core.r.pipeline(transaction=False)
        for k in keys:
            pipe.hget(k, "state")
        failed = [s for s in pipe.execute() if s != "completed"]
        peaks = {pid: peak_rss_mb(pid) for pid in pids}
        now_rss = {pid: rss_mb(pid) for pid in pids}
        pss = {pid: pss_mb(pid) for pid in pids}
        extra = {pid: children(pid) for pid in pids}
        time.sleep(1.5)  # the last partial batch of lag samples
        samples = [tuple(map(float, x.split())) for x in d.core.r.lrange("dsp:bench:poll_lag", 0, -1)]
        stats = stack.stats()
        cpu = {pid: cpu_seconds(pid) for pid in pids}
        group.stop()

    rss_sum = sum(peaks.values())
    lags = sorted(lag for _, lag in samples)
    p50, p95, p99 = (percentile(lags, q) for q in (0.5, 0.95, 0.99))
    # steady state: polls due once every job was in flight, before the first could end
    full = sampler.first_full or started
    steady = sorted(lag for due, lag in samples if full <= due < started + args.duration)
    burst = sorted(lag for due, lag in samples if due < full)
    print(f"inflight bench: {args.jobs} {args.provider} generations x {args.duration:g} s upstream, "
          f"{accounts} accounts x "
          f"maxJobs {MAX_JOBS}, {args.workers} worker processes; all done in {elapsed:.0f} s")
    print(f"{'running upstream, peak':<34}{sampler.peak_upstream:>8}   (sandbox count; slots held peak "
          f"{sampler.peak_slots}; all {args.jobs} in flight "
          + (f"{sampler.first_full - started:.1f} s after the first submit)" if sampler.first_full else "never)"))
    print(f"{'workers peak RSS, sum':<34}{rss_sum:>8.1f} MB  (target < 300; per process "
          + ", ".join(f"{peaks[p]:.1f}" for p in pids) + f"; at the end {sum(now_rss.values()):.1f}, "
          f"PSS {sum(pss.values()):.1f}; child processes: {sum(len(c) for c in extra.values())})")
    print(f"{'poll lag p50 / p95 / p99 / max':<34}{p50:>8.3f} / {p95:.3f} / {p99:.3f} / "
          f"{(lags[-1] if lags else float('nan')):.3f} s  ({len(lags)} polls; target p95 < 2 s)")
    print(f"{'  while submitting (p50 / p95)':<34}{percentile(burst, 0.5):>8.3f} / {percentile(burst, 0.95):.3f} s  "
          f"({len(burst)} polls due before all {args.jobs} were in flight)")
    print(f"{'  all in flight (p50 / p95)':<34}{percentile(steady, 0.5):>8.3f} / {percentile(steady, 0.95):.3f} s  "
          f"({len(steady)} polls due from then until the first could end)")
    print(f"{'workers CPU':<34}{sum(cpu.values()):>8.1f} s  ({100 * sum(cpu.values()) / elapsed:.0f}% of one core "
          f"over the run, {len(lags)} polls)")
    print(f"{'one plain RQ worker process':<34}{plain_rss:>8.1f} MB  (peak {plain_peak:.1f}): plain RQ holds a "
          f"worker per running job, so {args.jobs} in flight need {args.jobs} processes "
          f"~ {args.jobs * plain_rss / 1024:.1f} GB")
    print(f"sandbox: violations={stats['violations']} duplicates={stats['duplicates']} "
          f"not completed={len(failed)}")
    if failed or stats["violations"] or stats["duplicates"]:
        print("FAILED: every generation must complete with no violation and no duplicate", file=sys.stderr)
    cpu_ms_per_poll = 1000 * sum(cpu.values()) / len(lags) if lags else float("nan")
    held, cpu_per_s = sampler.steady_cpu(started + args.duration)
    print(f"{'holding them (steady state)':<34}{held:>8.0f} running upstream, workers CPU {cpu_per_s:.3f} s per s "
          f"({100 * cpu_per_s:.0f}% of one core)")
    print(f"inflight={sampler.peak_upstream} rss_mb={rss_sum:.1f} poll_lag_p50_s={p50:.3f} poll_lag_p95_s={p95:.3f} "
          f"poll_lag_p99_s={p99:.3f} polls={len(lags)} cpu_ms_per_poll={cpu_ms_per_poll:.2f} "
          f"steady_inflight={held:.0f} steady_cpu_per_s={cpu_per_s:.3f}")
    return 1 if failed or stats["violations"] or stats["duplicates"] else 0


if __name__ == "__main__":
    sys.exit(main())
