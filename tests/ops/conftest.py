"""Fixtures for the operations tests: demo accounts with known secrets, the dashboard, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Known credentials: the log and response checks look for exactly these strings.
KNOWN = {
    "runwayml": {"email": "ops-runway@example.com", "password": "Runway-pass-Kx81-not-for-logs"},
    "pixverse": {"email": "ops-pix@example.com", "password": "PixVerse-pass-Qz27-not-for-logs"},
    "minimax": {"account": "770001", "token": "minimax-pasted-token-Mm55-not-for-logs"},
    "riffusion": {"cookie": "sb-access-token=riffusion-cookie-Rf93-not-for-logs"},
}
SECRET_FIELDS = {"runwayml": "password", "pixverse": "password", "minimax": "token", "riffusion": "cookie"}
OPERATIONS = {"runwayml": "gen3turbo/create", "pixverse": "videos/create", "minimax": "videos/create",
              "riffusion": "music/create"}


def _env_for(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update({
        "DISPATCHER_REDIS_URL": settings.redis_url, "DISPATCHER_DATA_DIR": str(settings.data_dir),
        "DISPATCHER_SECRET_KEY": settings.secret_key, "DISPATCHER_API_TOKENS": ",".join(settings.api_tokens),
        "DISPATCHER_LOG_FORMAT": "json",
    })
    return env


@pytest.fixture
def add_account(dispatcher, sandbox):
    """`add_account(provider, max_jobs, creds=KNOWN[provider], **sandbox_options) -> account id`:
    the sandbox user and the dispatcher account (a real login)."""

    def add(provider: str, max_jobs: int, *, creds: dict | None = None, **options) -> str:
        creds = dict(creds or KNOWN[provider])
        res = sandbox.post("/_sandbox/users", json={"provider": provider, "concurrency": max_jobs, **creds, **options})
        assert res.status_code == 201, res.text
        from dispatcher import providers

        spec = providers.get(provider)
        path_id = None if spec.id_from_login else creds[spec.id_field]
        view = dispatcher.upsert_account(provider, {**creds, "maxJobs": max_jobs}, path_id)
        return view[spec.id_field]

    return add


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def wait():
    return wait_until


@pytest.fixture
def dashboard_url(settings, tmp_path):
    """`dispatcher dashboard` as a real subprocess on a free loopback port, on the test Redis."""
    from dispatcher.ops.redis_server import free_port

    port = free_port()
    log = open(tmp_path / "dashboard.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher.ops.cli", "dashboard", "--port", str(port)],
                            env=_env_for(settings), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"dashboard exited: {(tmp_path / 'dashboard.log').read_text()[-2000:]}")
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, what="the dashboard")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and running as root; else a clear skip."""
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"])
    for cmd in steps:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)} exited {done.returncode}): "
                        f"{done.stderr.strip()[-300:]}")
    found = _find_chromium()
    if not found:
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return found


@pytest.fixture
def browse(chromium, tmp_path):
    """`browse(url, dump=True | screenshot=Path)`: headless Chromium with a fresh profile each call."""
    calls = {"n": 0}

    def run(url: str, *, screenshot: Path | None = None, budget_ms: int = 6000) -> str:
        calls["n"] += 1
        profile = tmp_path / f"chromium-profile-{calls['n']}"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            cmd += ["--window-size=1400,1000", f"--screenshot={screenshot}", url]
        else:
            cmd += ["--dump-dom", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-1000:]}"
        return done.stdout

    return run


def operation(provider: str) -> str:
    from dispatcher import providers

    spec = providers.get(provider)
    op = OPERATIONS[provider]
    return op if not spec.operations or op in spec.operations else spec.operations[0]


@pytest.fixture
def submit(dispatcher):
    """`submit(provider, n, duration, **payload) -> [generation ids]` through the Python facade."""

    def go(provider: str, n: int, duration: float, **payload) -> list[str]:
        return [dispatcher.submit(provider, operation(provider),
                                  {"prompt": f"ops test {i}", "sandbox_duration": duration, **payload}).id
                for i in range(n)]

    return go


@pytest.fixture
def child_env():
    return _env_for


@pytest.fixture
def known() -> dict:
    """The known credentials per provider (copies) and, under "secret_fields", each one's secret field."""
    return {"accounts": {p: dict(c) for p, c in KNOWN.items()}, "secret_fields": dict(SECRET_FIELDS)}


@pytest.fixture
def op():
    """`op(provider) -> operation` the tests submit."""
    return operation
