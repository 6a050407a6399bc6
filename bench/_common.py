"""Shared pieces of the benchmarks: a private stack of real parts, started and always stopped.

`Stack` owns, in a temporary directory: an embedded Redis, the sandbox upstream
in a child process, the dispatcher `Settings` pointing at both, and worker
processes — dispatcher workers (`python -m workers --processes 1`, the same
command the test fleet runs) or plain RQ workers (`python -m bench._plain`,
the same `workers.pool.StepWorker` class on a queue of its own). It mirrors the
logic of the test fixtures (tests/conftest.py) without importing test code.

    with Stack(lease_ttl=30) as stack:
        d = stack.dispatcher()
        stack.add_accounts(d, "riffusion", count=10, max_jobs=10, concurrency=10, duration=0)
        group = stack.workers(2)
        ...
        group.stop()
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dispatcher.ops.redis_server import EmbeddedRedis  # noqa: E402
from dispatcher.sandbox import SandboxProcess  # noqa: E402
from dispatcher.settings import Settings  # noqa: E402

PLAIN_QUEUE = "bench.plain"


def median_spread(values) -> tuple[float, float, float]:
    values = list(values)
    return statistics.median(values), min(values), max(values)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- process memory (Linux /proc; no extra dependency) ---------------------------------
def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """High-water mark of the resident set (VmHWM)."""
    return _status_kb(pid, "VmHWM") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages divided among their sharers (fork children)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuMeter:
    """CPU seconds used by named groups of processes between `start()` and `stop()`: where a
    side-by-side run spends its cycles (workers, Redis, the upstream, the submitting bench)."""

    def __init__(self, parts: dict[str, list[int]]):
        self.parts = parts
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.parts.items()}

    def start(self) -> "CpuMeter":
        self._before = self._now()
        return self

    def stop(self) -> dict[str, float]:
        after = self._now()
        return {name: after[name] - self._before[name] for name in self.parts}


def children(pid: int) -> list[int]:
    """Direct children (RQ forks its scheduler from the worker process)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


# -- worker processes -----------------------------------------------------------------
class WorkerGroup:
    """Worker subprocesses of one kind; `stop()` terminates them (SIGKILL after 10 s)."""

    def __init__(self, procs: list[subprocess.Popen], logs: list[Path]):
        self.procs = procs
        self.logs = logs

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def check(self) -> None:
        for p, log in zip(self.procs, self.logs):
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.pid} exited with {p.returncode}; log tail:\n{_tail(log)}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def log_lines(self) -> list[dict]:
        """Every JSON log line the group wrote (non-JSON lines are skipped)."""
        from dispatcher.logging import parse_json_lines

        return [e for log in self.logs for e in parse_json_lines(log.read_text(errors="replace"))]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class Stack:
    """Embedded Redis + sandbox + settings in a temporary directory; workers on demand."""

    def __init__(self, *, lease_ttl: float = 30.0, maintenance_interval: float = 1.0,
                 extra_env: dict[str, str] | None = None):
        self.lease_ttl = lease_ttl
        self.maintenance_interval = maintenance_interval
        self.extra_env = dict(extra_env or {})
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.redis: EmbeddedRedis | None = None
        self.sandbox: SandboxProcess | None = None
        self.settings: Settings | None = None
        self.groups: list[WorkerGroup] = []
        self._dispatchers: list = []

    # -- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from cryptography.fernet import Fernet

        self._tmp = tempfile.TemporaryDirectory(prefix="dispatcher-bench-")
        self.dir = Path(self._tmp.name)
        self.redis = EmbeddedRedis(self.dir)
        redis_url = self.redis.start()
        self.sandbox = SandboxProcess()
        upstream = self.sandbox.start()
        self.settings = Settings(
            redis_url=redis_url, upstream_url=upstream, data_dir=self.dir / "data",
            api_tokens=("bench-api-token-0123456789",), secret_key=Fernet.generate_key().decode(),
            lease_ttl=self.lease_ttl, maintenance_interval=self.maintenance_interval, log_format="json",
        )

    def stop(self) -> None:
        for g in self.groups:
            g.stop()
        self.groups = []
        for d in self._dispatchers:
            try:
                d.close()
            except Exception:
                pass
        self._dispatchers = []
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- parts ------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.settings.redis_url

    @property
    def upstream_url(self) -> str:
        return self.settings.upstream_url

    def admin(self) -> httpx.Client:
        """An httpx client on the sandbox's admin API."""
        return httpx.Client(base_url=self.upstream_url, timeout=30)

    def dispatcher(self):
        from dispatcher.client import Dispatcher

        d = Dispatcher(self.redis_url, self.settings)
        self._dispatchers.append(d)
        return d

    def env(self) -> dict[str, str]:
        """The settings as DISPATCHER_* variables, for worker subprocesses."""
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env["DISPATCHER_LOG_FORMAT"] = "json"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env.update(self.extra_env)
        return env

    def workers(self, n: int, *, plain: bool = False, ready_timeout: float = 60.0) -> WorkerGroup:
        """Start n worker processes and wait until each has registered with RQ."""
        import redis

        if plain:
            cmd = [sys.executable, "-m", "bench._plain", "--queue", PLAIN_QUEUE]
        else:
            cmd = [sys.executable, "-m", "workers", "--processes", "1"]
        client = redis.Redis.from_url(self.redis_url)
        before = set(client.smembers("rq:workers"))
        procs, logs = [], []
        for i in range(n):
            log = self.dir / f"{'plain' if plain else 'dispatcher'}-worker-{len(self.groups)}-{i}.log"
            with open(log, "ab") as fh:
                procs.append(subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdin=subprocess.DEVNULL,
                                              stdout=fh, stderr=subprocess.STDOUT))
            logs.append(log)
        group = WorkerGroup(procs, logs)
        self.groups.append(group)
        deadline = time.monotonic() + ready_timeout
        while len(set(client.smembers("rq:workers")) - before) < n:
            group.check()
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register with RQ in time")
            time.sleep(0.05)
        client.close()
        return group

    def stop_group(self, group: WorkerGroup) -> None:
        group.stop()
        if group in self.groups:
            self.groups.remove(group)

    # -- accounts ---------------------------------------------------------------------
    def add_accounts(self, d, provider: str, *, count: int, max_jobs: int, concurrency: int,
                     duration: float, prefix: str = "bench") -> list[tuple[str, str]]:
        """Create `count` sandbox users and register each with the dispatcher (which logs in).

        Returns (account id, credential) pairs. Riffusion (cookie login) and Runway
        (email + password) are supported: the benchmarks need nothing else."""
        if provider not in ("riffusion", "runwayml"):
            raise ValueError("bench accounts are Riffusion or Runway accounts")
        out = []
        with self.admin() as admin:
            for i in range(count):
                secret = f"{prefix}-secret-{i:05d}-{os.urandom(4).hex()}"
                if provider == "riffusion":
                    user, body = {"cookie": secret}, {"cookie": secret}
                else:
                    email = f"{prefix}-{i:05d}@bench.example"
                    user = body = {"email": email, "password": secret}
                response = admin.post("/_sandbox/users", json={
                    "provider": provider, **user, "concurrency": concurrency, "duration": duration,
                })
                response.raise_for_status()
                view = d.upsert_account(provider, {**body, "maxJobs": max_jobs})
                out.append((view["user_id" if provider == "riffusion" else "email"], secret))
        return out

    def stats(self) -> dict:
        with self.admin() as admin:
            response = admin.get("/_sandbox/stats")
            response.raise_for_status()
            return response.json()
