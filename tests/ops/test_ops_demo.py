"""`dispatcher demo`: from a clean data directory to a summary, and everything stopped afterwards."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from dispatcher import keys, providers
from dispatcher.ops.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = tuple(sorted(providers.REGISTRY))  # every provider folder brings its demo accounts
JOBS = 4 * len(PROVIDERS)


def demo_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    (tmp_path / "home").mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), DISPATCHER_DATA_DIR=str(tmp_path / "data"),
               DISPATCHER_DASHBOARD_PORT=str(free_port()), **extra)
    return env


def assert_all_stopped(data_dir: Path, out: str) -> None:
    server = EmbeddedRedis(data_dir)
    assert not server.is_running(), "the demo left its embedded Redis running"
    for url in re.findall(r"http://127\.0\.0\.1:\d+", out):
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {url}"


def test_demo_once_from_a_clean_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    assert not data_dir.exists()
    with socket.socket() as busy:  # the API's preferred port is taken: the demo must fall back
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", "demo", "--once", "--jobs", str(JOBS)],
                              env=demo_env(tmp_path, DISPATCHER_PORT=str(taken)), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"demo failed ({done.returncode}):\n{out}\n{done.stderr[-3000:]}"
    assert f"summary    {JOBS}/{JOBS} completed, 0 failed, 0 canceled, 0 unfinished" in out, out
    accounts = re.findall(r"^  (\w+)\s+(\S+)\s+maxJobs (\d+)\s+completed (\d+)$", out, re.M)
    assert {a[0] for a in accounts} == set(PROVIDERS), out
    assert sum(int(a[3]) for a in accounts) == JOBS
    for provider in PROVIDERS:  # 4 jobs each, more than the provider's free slots for three of them
        assert sum(int(a[3]) for a in accounts if a[0] == provider) == 4
    p50, p95 = re.search(r"submit→done  p50 ([\d.]+)s  p95 ([\d.]+)s", out).groups()
    assert 0 < float(p50) <= float(p95)
    assert re.search(r"submit→slot  p50 [\d.]+s  p95 [\d.]+s", out)
    assert "0 concurrency violations, 0 duplicate submissions" in out
    api = re.search(r"^API docs   (http://127\.0\.0\.1:(\d+))/docs$", out, re.M)
    assert api and int(api.group(2)) != taken, "the demo did not fall back from a busy API port"
    assert re.search(r"^dashboard  http://127\.0\.0\.1:\d+/$", out, re.M)
    curl = re.search(r'^try        curl -s -H "Authorization: Bearer \$\(cat (\S+)\)" (\S+)$', out, re.M)
    assert curl, "no working curl line (it is printed only with the token file and a 200 answer)"
    assert Path(curl.group(1)) == data_dir / "api_token" and curl.group(2).startswith(api.group(1))
    token = (data_dir / "api_token").read_text().strip()
    assert token and token not in out + done.stderr, "the API token itself was printed"
    for name in ("api_token", "secret.key", "redis_password"):
        assert (data_dir / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    password = (data_dir / "redis_password").read_text().strip()
    logs = "".join(f.read_text(errors="replace") for f in (data_dir / "demo-logs").glob("*.log"))
    assert password and password not in out + done.stderr + logs, "the Redis password was printed or logged"
    assert "redis      redis://:…secured…@127.0.0.1:" in out
    assert_all_stopped(data_dir, out)
    server = EmbeddedRedis(data_dir)  # the AOF kept the run; the demo's accounts were removed from it
    server.start()
    try:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        assert any(k.startswith("dsp:{runwayml}:gen:") for k in r.scan_iter("dsp:*", count=1000))
        for provider in PROVIDERS:
            assert r.scard(keys.accounts(provider)) == 0, f"demo accounts left behind on {provider}"
        r.close()
    finally:
        server.stop()


def test_demo_through_the_useapi_emulation(tmp_path):
    """`dispatcher demo --upstream useapi`: every provider through the sandbox's useapi.net."""
    done = subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", "demo", "--once", "--upstream", "useapi",
                           "--jobs", str(2 * len(PROVIDERS))], env=demo_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"demo failed ({done.returncode}):\n{out}\n{done.stderr[-3000:]}"
    assert re.search(r"^useapi     http://127\.0\.0\.1:\d+/useapi ", out, re.M), out
    assert f"summary    {2 * len(PROVIDERS)}/{2 * len(PROVIDERS)} completed, 0 failed" in out, out
    assert re.search(r"^useapi     \d+ calls, 0 violations, 0 requests on an expired session", out, re.M), out
    assert_all_stopped(tmp_path / "data", out)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_stays_up_until_ctrl_c_then_stops_everything(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher.ops.cli", "demo", "--jobs", "8"],
                            env=demo_env(tmp_path, DISPATCHER_PORT=str(free_port())), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any("Press Ctrl-C to stop" in line for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"demo exited early:\n{''.join(lines)}\n{proc.stderr.read()}"
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        out = "".join(lines)
        assert "summary    8/8 completed" in out
        curl = re.search(r"^try        (curl .*)$", out, re.M).group(1)
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0 and '"accounts"' in answer.stdout, answer.stdout + answer.stderr
        docs = re.search(r"^API docs   (\S+)$", out, re.M).group(1)
        dashboard = re.search(r"^dashboard  (\S+)$", out, re.M).group(1)
        assert httpx.get(docs, timeout=10).status_code == 200
        assert "dispatcher.runwayml" in httpx.get(f"{dashboard}0/data/queues.json", timeout=10).text
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # a failed assertion: let the demo stop what it started
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "stopping everything the demo started" in rest
    assert_all_stopped(tmp_path / "data", out)


def test_percentile_and_port_choice():
    from dispatcher.ops.demo_view import percentile
    from dispatcher.ops.processes import pick_port, port_free

    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0 and percentile(values, 100) == 100.0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not port_free(taken)
        chosen = pick_port(taken, set())
        assert chosen != taken and port_free(chosen)
        assert pick_port(chosen, {chosen}) != chosen
