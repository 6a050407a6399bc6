"""Load: 10,000 generations with an instant upstream through 4 worker processes.

0 violations, every generation completed once, no slot left, worker memory flat.
The heaviest test of the suite (minutes on 2 cores): marked slow and run only
with DISPATCHER_SLOW_TESTS=1, e.g.

    DISPATCHER_SLOW_TESTS=1 .venv/bin/python -m pytest tests/reliability/test_load.py -q -s
"""

from __future__ import annotations

import os
import time

import pytest

GENERATIONS = int(os.environ.get("DISPATCHER_LOAD_GENERATIONS", "10000"))
WORKERS = 4
RSS_GROWTH_LIMIT_KIB = 64 * 1024  # generous: a leak of a few KiB per generation would pass 40 MiB

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DISPATCHER_SLOW_TESTS", "") in ("", "0"),
                       reason="load test: set DISPATCHER_SLOW_TESTS=1 (takes minutes)"),
    pytest.mark.timeout(1800),
]


def test_10000_instant_generations_on_4_workers(rig, fleet, rss):
    rig.add_accounts(5, 10, duration=0)
    fleet.start(WORKERS)
    rig.wait_workers(WORKERS)
    pids = [p.pid for p in fleet.procs]

    began = time.monotonic()
    warmup = rig.submit(200, durations=(0,))
    rig.wait_finished(warmup, timeout=120)
    start_rss = {pid: rss(pid) for pid in pids}  # after imports and first connections: the steady state

    ids = warmup + rig.submit(GENERATIONS - len(warmup), durations=(0,), start=len(warmup))
    submitted = time.monotonic()
    states = rig.wait_finished(ids, timeout=1500, interval=2.0)
    finished = time.monotonic()
    end_rss = {pid: rss(pid) for pid in pids}

    stats = rig.assert_clean_finish(ids, states)
    assert all(p.poll() is None for p in fleet.procs), "a worker died under load"
    rate = len(ids) / (finished - began)
    print(f"\nload: {len(ids)} generations, {WORKERS} workers, submit {submitted - began:.1f}s, "
          f"all done {finished - began:.1f}s ({rate:.0f}/s), violations {stats['violations']}, "
          f"duplicates {stats['duplicates']}")
    for pid in pids:
        print(f"  worker {pid}: RSS {start_rss[pid] / 1024:.1f} MiB -> {end_rss[pid] / 1024:.1f} MiB "
              f"({(end_rss[pid] - start_rss[pid]) / 1024:+.1f} MiB)")
    for pid in pids:
        assert end_rss[pid] - start_rss[pid] < RSS_GROWTH_LIMIT_KIB, (pid, start_rss[pid], end_rss[pid])
