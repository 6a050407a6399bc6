"""Generations per second through the dispatcher vs. plain RQ jobs, instant upstream.

    python bench/throughput.py [--jobs 1000] [--workers 2] [--repeat 3] [--accounts 10]
                               [--chain-starts N]

One run, one private stack (embedded Redis, sandbox upstream), Riffusion accounts
whose upstream takes no time (`sandbox_duration: 0`). Each round runs both sides
with the same number of worker processes of the same class
(`workers.pool.StepWorker`), the order alternating between rounds:

- dispatcher: `Dispatcher.submit` for every generation (admission in Lua, waiting
  line when every slot is taken: 1,000 generations on 100 slots by default), then
  the workers' step jobs: start (create upstream, save its id, one status call) →
  finish, release the slot, admit the next waiter, whose start the same step runs
  itself (workers/chain.py; `--chain-starts 0`: every start its own RQ job;
  `--accounts 100`: no line forms; a start job runs the starts queued behind it);
- plain RQ: one job per generation that calls the same create + status (same
  adapter, same httpx) with no balancing (accounts' tokens round-robin).

Both sides are timed the same way: from the first submit/enqueue to the last
generation's recorded end (`finished_at` of the record / RQ's `ended_at`), with
the workers already running and warmed up. Figures are medians over rounds.
Each timed batch is also metered: the CPU seconds of the workers (and RQ's forked
scheduler), Redis, the upstream and this submitting process, printed as ms per
generation for both sides and their difference, so a gap in the ratio can be traced
to the part that spends the extra cycles. The last line is machine-readable:

    ratio=<x> dispatcher_per_s=<y> plain_rq_per_s=<z>
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from datetime import timezone
from pathlib import Path

import structlog

# the bench process itself (the "backend" submitting) logs only warnings, not a line per
# submit; set before dispatcher modules bind their loggers
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PLAIN_QUEUE, CpuMeter, Stack, children, median_spread  # noqa: E402

PROVIDER = "riffusion"
OPERATION = "music/generate"
TARGET = 0.9
PARTS = ("workers", "redis", "upstream", "submitter")


def _meter(stack, group) -> CpuMeter:
    """CPU of every process that does the work of one side (the bench's own process submits)."""
    workers = [*group.pids, *(c for p in group.pids for c in children(p))]
    return CpuMeter({"workers": workers, "redis": [stack.redis.pid()], "upstream": [stack.sandbox.process.pid],
                     "submitter": [os.getpid()]})


def _wait_all(states, ids: list, timeout: float, label: str, group) -> None:
    """Wait until every id is done. Generations end roughly in submission order, so
    only the oldest pending ones are read (a bounded window per check, not all n):
    the watching costs the measured system next to nothing."""
    deadline = time.monotonic() + timeout
    first, window = 0, 100
    while first < len(ids):
        done = states(ids[first:first + window])
        while done and done[0]:
            done.pop(0)
            first += 1
        if first >= len(ids):
            return
        group.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label}: {first}/{len(ids)} done in order after {timeout:.0f} s")
        time.sleep(0.1)


def run_dispatcher(d, n: int, tag: str, group, timeout: float) -> float:
    """Submit n generations; generations/s from the first submit to the last finish."""
    r = d.core.r
    t0 = time.time()
    ids = [d.submit(PROVIDER, OPERATION, {"prompt": f"bench {tag} {i}", "sandbox_duration": 0}).id
           for i in range(n)]
    submitted = time.time() - t0
    keys = [f"dsp:{{{PROVIDER}}}:gen:{gid}" for gid in ids]

    def states(some: list) -> list[bool]:
        pipe = r.pipeline(transaction=False)
        for k in some:
            pipe.hget(k, "state")
        return [s in ("completed", "failed", "canceled") for s in pipe.execute()]

    _wait_all(states, keys, timeout, "dispatcher", group)
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.hmget(k, "state", "finished_at")
    rows = pipe.execute()
    bad = [s for s, _ in rows if s != "completed"]
    if bad:
        raise RuntimeError(f"dispatcher: {len(bad)} generations did not complete: {sorted(set(bad))}")
    end = max(float(f) for _, f in rows)
    print(f"  dispatcher: {n} submitted in {submitted:.2f} s, the last ended after {end - t0:.2f} s", flush=True)
    return n / (end - t0)


def run_plain(queue, base_url: str, tokens: list[str], n: int, tag: str, group, timeout: float) -> float:
    """Enqueue n plain RQ jobs; generations/s from the first enqueue to the last job's end."""
    from rq.job import Job

    conn = queue.connection
    t0 = time.time()
    ids = []
    for i in range(n):
        job = queue.enqueue("bench._plain.plain_job", base_url, tokens[i % len(tokens)], OPERATION,
                            {"prompt": f"plain {tag} {i}", "sandbox_duration": 0}, f"plain-{tag}-{i}",
                            result_ttl=3600, job_timeout=120)
        ids.append(job.id)
    submitted = time.time() - t0

    def states(some: list) -> list[bool]:
        pipe = conn.pipeline(transaction=False)
        for jid in some:
            pipe.hget(f"rq:job:{jid}", "status")
        return [s in (b"finished", b"failed") for s in pipe.execute()]

    _wait_all(states, ids, timeout, "plain", group)
    jobs = Job.fetch_many(ids, connection=conn)
    bad = [j.id for j in jobs if j is None or j.get_status() != "finished" or j.return_value() != "succeeded"]
    if bad:
        raise RuntimeError(f"plain: {len(bad)} jobs did not succeed")
    end = max(_epoch(j.ended_at) for j in jobs)
    print(f"  plain RQ: {n} enqueued in {submitted:.2f} s, the last ended after {end - t0:.2f} s", flush=True)
    return n / (end - t0)


def _epoch(dt) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _print_cpu(cpu: dict[str, list[dict]], n: int) -> None:
    """Where the cycles go: CPU ms per generation of each part (medians over rounds). With
    the machine's cores saturated, the throughput ratio follows the ratio of the totals."""
    print(f"cpu ms/gen    {''.join(f'{p:>11}' for p in PARTS)}{'total':>11}")
    medians = {}
    for side, runs in cpu.items():
        medians[side] = {p: median_spread(1000 * run[p] / n for run in runs)[0] for p in PARTS}
        medians[side]["total"] = median_spread(1000 * sum(run.values()) / n for run in runs)[0]
        print(f"{side:<14}{''.join(f'{medians[side][p]:>11.2f}' for p in (*PARTS, 'total'))}")
    extra = {p: medians["dispatcher"][p] - medians["plain RQ"][p] for p in (*PARTS, "total")}
    print(f"{'difference':<14}{''.join(f'{extra[p]:>+11.2f}' for p in (*PARTS, 'total'))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="generations per side per round")
    parser.add_argument("--workers", type=int, default=2, help="worker processes on each side")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--accounts", type=int, default=10, help="sandbox accounts (maxJobs 10 each)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed generations before each timed batch")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one batch")
    parser.add_argument("--chain-starts", type=int, default=None,
                        help="the workers' DISPATCHER_CHAIN_STARTS (default: the setting's default; 0: none)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.repeat < 1 or args.accounts < 1:
        parser.error("--jobs, --workers, --repeat and --accounts must be >= 1")
    if args.chain_starts is not None and args.chain_starts < 0:
        parser.error("--chain-starts must be >= 0")
    from dispatcher.settings import Settings

    chain_starts = Settings().chain_starts if args.chain_starts is None else args.chain_starts

    from rq import Queue

    rounds: list[tuple[float, float]] = []
    with Stack(lease_ttl=30.0, maintenance_interval=1.0,
               extra_env={"DISPATCHER_CHAIN_STARTS": str(chain_starts)}) as stack:
        d = stack.dispatcher()
        accounts = stack.add_accounts(d, PROVIDER, count=args.accounts, max_jobs=10, concurrency=10, duration=0)
        tokens = [d.core.token_for(PROVIDER, a) for a, _ in accounts]
        plain_queue = Queue(PLAIN_QUEUE, connection=d.core.rq)
        base = stack.upstream_url

        def dispatcher_side(r: int) -> float:
            group = stack.workers(args.workers)
            try:
                run_dispatcher(d, args.warmup, f"w{r}", group, args.timeout)
                meter = _meter(stack, group).start()
                rate = run_dispatcher(d, args.jobs, f"r{r}-{uuid.uuid4().hex[:6]}", group, args.timeout)
                cpu["dispatcher"].append(meter.stop())
                return rate
            finally:
                stack.stop_group(group)

        def plain_side(r: int) -> float:
            group = stack.workers(args.workers, plain=True)
            try:
                run_plain(plain_queue, base, tokens, args.warmup, f"w{r}", group, args.timeout)
                meter = _meter(stack, group).start()
                rate = run_plain(plain_queue, base, tokens, args.jobs, f"r{r}-{uuid.uuid4().hex[:6]}", group,
                                 args.timeout)
                cpu["plain RQ"].append(meter.stop())
                return rate
            finally:
                stack.stop_group(group)

        cpu: dict[str, list[dict]] = {"dispatcher": [], "plain RQ": []}
        for r in range(args.repeat):
            if r % 2 == 0:
                disp, plain = dispatcher_side(r), plain_side(r)
            else:
                plain, disp = plain_side(r), dispatcher_side(r)
            rounds.append((disp, plain))
            print(f"round {r + 1}: dispatcher {disp:.1f}/s  plain RQ {plain:.1f}/s  ratio {disp / plain:.3f}",
                  flush=True)
        stats = stack.stats()

    disp_med, disp_lo, disp_hi = median_spread(d for d, _ in rounds)
    plain_med, plain_lo, plain_hi = median_spread(p for _, p in rounds)
    ratio_med, ratio_lo, ratio_hi = median_spread(d / p for d, p in rounds)
    print(f"throughput bench: {args.jobs} generations per side per round, {args.workers} worker processes "
          f"(workers.pool.StepWorker) per side, {args.accounts} accounts (maxJobs 10 each), chain_starts "
          f"{chain_starts}, instant upstream; medians of {args.repeat}")
    print(f"{'dispatcher':<14}{disp_med:>10.1f} gen/s   (rounds {disp_lo:.1f}-{disp_hi:.1f})")
    print(f"{'plain RQ':<14}{plain_med:>10.1f} gen/s   (rounds {plain_lo:.1f}-{plain_hi:.1f})")
    print(f"{'ratio':<14}{ratio_med:>10.3f}         (target >= {TARGET}; rounds {ratio_lo:.3f}-{ratio_hi:.3f})")
    print(f"sandbox: violations={stats['violations']} duplicates={stats['duplicates']}")
    _print_cpu(cpu, args.jobs)
    print(f"ratio={ratio_med:.3f} dispatcher_per_s={disp_med:.1f} plain_rq_per_s={plain_med:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
