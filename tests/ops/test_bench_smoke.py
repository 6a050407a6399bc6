"""The benchmark scripts keep working: each runs end to end on a tiny load and ends with its
machine-readable `key=value` line. Nothing here judges speed (the figures of a tiny run on a
shared machine mean nothing); it keeps `bench/` from rotting between measurements."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RUNS = {
    "throughput": (["--jobs", "12", "--repeat", "1", "--warmup", "2", "--accounts", "2", "--timeout", "120"],
                   ("ratio", "dispatcher_per_s", "plain_rq_per_s")),
    "inflight": (["--generations", "12", "--duration", "2", "--timeout", "120"],
                 ("inflight", "rss_mb", "poll_lag_p50_s", "poll_lag_p95_s", "poll_lag_p99_s", "polls",
                  "cpu_ms_per_poll", "steady_inflight", "steady_cpu_per_s")),
    "inflight_scaling": (["--sizes", "6,12", "--duration", "2", "--out", "{tmp}/inflight-cpu"],
                         ("cpu_per_s_6", "cpu_ms_per_poll_6", "cpu_per_s_12", "cpu_ms_per_poll_12")),
    "capacity": (["--seconds", "0.3", "--repeat", "1", "--samples", "200"],
                 ("acquire_over_ping", "pairs_per_s_1", "pairs_per_s_8", "policy_acquire_over_ping",
                  "policy_pairs_per_s_1", "policy_pairs_per_s_8", "policy_ratio_8")),
    "accounts": (["--accounts", "60", "--logins", "2", "--creates", "5", "--ticks", "2", "--idle-seconds", "1"],
                 ("accounts", "create_ms_p50", "generic_create_ms_p50", "tick_ms", "decrypts_per_tick",
                  "decrypts_per_create", "opens_per_tick", "opens_per_create", "available_ms", "idle_cpu_pct")),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", sorted(RUNS))
def test_a_bench_script_runs_and_ends_with_its_headline(script, tmp_path):
    args, keys = RUNS[script]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    pairs = dict(re.findall(r"(\w+)=(\S+)", last))
    assert pairs and " ".join(f"{k}={v}" for k, v in pairs.items()) == last, last
    for value in pairs.values():
        float(value)  # every headline figure is a number
    assert tuple(pairs) == keys, last
    if script == "throughput":  # the CPU table of both sides is printed above the headline
        assert re.search(r"^plain RQ\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", done.stdout, re.M), done.stdout
    if script == "inflight":
        assert int(pairs["inflight"]) == 12, done.stdout[-2000:]
    if script == "inflight_scaling":  # the plot, drawn from both runs
        assert (tmp_path / "inflight-cpu.svg").read_text().count("<circle") == 2
    if script == "accounts":  # counts, not speeds: an idle tick and a create open no account's secrets
        assert pairs["accounts"] == "60" and pairs["opens_per_tick"] == pairs["opens_per_create"] == "0", last
