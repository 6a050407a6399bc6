"""Backends on RQ: our worker processes (killable) and a plain `rq worker` for the backend's queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BACKEND_QUEUE = "videos"
PASSWORD = "bk-Pa55word-never-shown-{}"


@pytest.fixture
def settings(settings):
    """The tests' settings, with the replyQueue allow-list and short callback deadlines (a callback
    worker killed mid-run is taken over after deadline + 5 s)."""
    return settings.with_(reply_queues=(f"{BACKEND_QUEUE}=backend_jobs.event", "events=backend_jobs.*"),
                          callback_deadline=1.0)


class Procs:
    """Subprocesses started by one test, all stopped (SIGTERM, then SIGKILL) at its end."""

    def __init__(self, settings, log_dir: Path):
        self.settings, self.log_dir = settings, log_dir
        self.ours: list[subprocess.Popen] = []
        self.backend: list[subprocess.Popen] = []
        self.restarts = 0

    def _env(self) -> dict:
        env = {**os.environ, **self.settings.to_env(), "DISPATCHER_LOG_FORMAT": "json"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), str(ROOT / "examples"), env.get("PYTHONPATH", "")])
        return env

    def _log(self, name: str):
        return open(self.log_dir / f"{name}-{time.monotonic_ns()}.log", "ab")

    def start_ours(self, n: int = 1) -> None:
        """Our worker processes (`python -m workers --processes 1` and its callback worker), killable."""
        for _ in range(n):
            self.ours.append(subprocess.Popen([sys.executable, str(HERE / "killing_worker.py"), "--processes", "1"],
                                              env=self._env(), cwd=ROOT, stdout=self._log("ours"),
                                              stderr=subprocess.STDOUT))

    def revive(self) -> int:
        """Restart our workers that died (SIGKILLed on purpose); returns how many."""
        dead = [i for i, p in enumerate(self.ours) if p.poll() is not None]
        for i in dead:
            self.ours[i] = subprocess.Popen([sys.executable, str(HERE / "killing_worker.py"), "--processes", "1"],
                                            env=self._env(), cwd=ROOT, stdout=self._log("ours"),
                                            stderr=subprocess.STDOUT)
        self.restarts += len(dead)
        return len(dead)

    def start_backend(self, queues=(BACKEND_QUEUE,), serializer: str | None = None) -> None:
        """A plain `rq worker` on the backend's queues, importing `backend_jobs`."""
        cmd = [str(Path(sys.executable).parent / "rq"), "worker", *queues, "--url", self.settings.redis_url,
               "--logging_level", "WARNING"]
        if serializer:
            cmd += ["--serializer", serializer]
        self.backend.append(subprocess.Popen(cmd, env=self._env(), cwd=HERE, stdout=self._log("backend"),
                                             stderr=subprocess.STDOUT))

    def stop(self) -> None:
        procs = self.ours + self.backend
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def logs(self) -> str:
        return "".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def procs(settings, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    p = Procs(settings, log_dir)
    yield p
    p.stop()


@pytest.fixture
def accounts(dispatcher, sandbox):
    """A function: n sandbox accounts of Runway whose upstream concurrency equals maxJobs."""

    def add(n: int, max_jobs: int) -> list[str]:
        ids = []
        for i in range(n):
            email, password = f"bk-{i}@example.com", PASSWORD.format(i)
            res = sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": email, "password": password,
                                                        "concurrency": max_jobs, "duration": 0.5})
            assert res.status_code == 201, res.text
            dispatcher.upsert_account("runwayml", {"email": email, "password": password, "maxJobs": max_jobs})
            ids.append(email)
        return ids

    return add


@pytest.fixture
def ran(r):
    """A function: what the backend's jobs recorded so far (dicts, in order)."""
    return lambda: [json.loads(e) for e in r.lrange("bk:ran", 0, -1)]


@pytest.fixture
def until():
    """A function: wait (bounded) until `check()` is true; `tick()` runs between tries."""

    def wait(check, timeout: float, what: str, tick=None):
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
            if tick is not None:
                tick()
            time.sleep(0.1)

    return wait


def prompt(i: int, fail: bool = False, duration: float = 0.5) -> dict:
    """A payload the sandbox completes after `duration` seconds (fails at its end with `fail`)."""
    return {"promptText": f"backend {i}{' [fail]' if fail else ''}", "sandbox_duration": duration}


@pytest.fixture
def payload():
    return prompt
