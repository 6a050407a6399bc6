"""`dispatcher demo` (`make demo`): the whole system on one machine, watched live.

Starts the embedded Redis (unless `DISPATCHER_REDIS_URL` is set), the sandbox
upstream, the HTTP API (`dispatcher serve`), two worker processes
(`dispatcher worker --processes 2`) and rq-dashboard (`dispatcher dashboard`);
registers demo accounts on all four providers (sandbox users + `upsert_account`,
a real login each); submits generations (more than there are free slots, so
waiting lines form); shows every account's slots, the waiting lines and the job
states live; prints a summary; then stays up until Ctrl-C and stops everything
it started. `--once` exits after the summary.
"""

from __future__ import annotations

import importlib.util
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import logging as dlog
from . import providers
from .errors import ConfigurationError, DispatcherError
from .generations import COMPLETED, TERMINAL

_ROOT = Path(__file__).resolve().parents[1]  # the directory holding the `dispatcher` package
STATES = ("waiting", "admitted", "submitted", "completed", "failed", "canceled")
OPERATIONS = {"runwayml": "gen3turbo/create", "pixverse": "videos/create", "minimax": "videos/create",
              "riffusion": "music/create"}
STARTUP_TIMEOUT = 90.0


@dataclass
class DemoAccount:
    provider: str
    upstream: dict  # body for the sandbox's POST /_sandbox/users
    body: dict  # body for Dispatcher.upsert_account (maxJobs included)
    path_id: str | None
    id: str | None = None  # known after login (Riffusion's comes from the upstream)


def demo_accounts() -> list[DemoAccount]:
    """Seven accounts on four providers, 13 slots; fresh credentials every run."""
    out = []
    for email, max_jobs in (("studio-a@demo.example", 3), ("studio-b@demo.example", 2)):
        password = secrets.token_urlsafe(12)
        out.append(DemoAccount("runwayml", {"email": email, "password": password},
                               {"email": email, "password": password, "maxJobs": max_jobs}, email))
    for email, max_jobs in (("pix-a@demo.example", 2), ("pix-b@demo.example", 1)):
        password = secrets.token_urlsafe(12)
        out.append(DemoAccount("pixverse", {"email": email, "password": password},
                               {"email": email, "password": password, "maxJobs": max_jobs}, email))
    out.append(DemoAccount("minimax", {"account": "310001"}, {"account": "310001", "maxJobs": 2}, "310001"))
    for max_jobs in (2, 1):
        cookie = f"sb-access-token={secrets.token_urlsafe(18)}"
        out.append(DemoAccount("riffusion", {"cookie": cookie}, {"cookie": cookie, "maxJobs": max_jobs}, None))
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and port_free(preferred):
        return preferred
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


class Demo:
    def __init__(self, settings, *, jobs: int, out=None, seed: int | None = None):
        self.settings = settings
        self.jobs = jobs
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.rng = random.Random(seed)
        self.data_dir = Path(settings.data_dir).resolve()
        self.log_dir = self.data_dir / "demo-logs"
        self.children: dict[str, subprocess.Popen] = {}
        self.redis = None  # the EmbeddedRedis we started (stopped at the end)
        self.sandbox = None
        self.d = None
        self.api_url = self.dashboard_url = None
        self.accounts: list[DemoAccount] = []

    # -- output -------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # -- start ----------------------------------------------------------------------
    def start(self) -> None:
        from .client import Dispatcher
        from .redis_server import EmbeddedRedis
        from .sandbox import SandboxProcess
        from .secrets import api_tokens

        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.redis_url:
            redis_url = self.settings.redis_url
            self.say(f"redis      {_mask(redis_url)} (DISPATCHER_REDIS_URL: demo accounts are added there "
                     "and removed when the demo stops)")
        else:
            embedded = EmbeddedRedis(self.data_dir, maxmemory=self.settings.redis_maxmemory)
            running = embedded.is_running()
            redis_url = embedded.start()
            if not running:
                self.redis = embedded
            self.say(f"redis      {_mask(redis_url)} (embedded, AOF in {embedded.dir}, password in "
                     f"{embedded.password_file})")
        self.sandbox = SandboxProcess()
        upstream = self.sandbox.start()
        self.say(f"sandbox    {upstream} (simulated Runway, PixVerse, MiniMax, Riffusion)")
        self.settings = self.settings.with_(redis_url=redis_url, upstream_url=upstream, data_dir=self.data_dir)
        self.d = Dispatcher(redis_url, self.settings)
        self.token = api_tokens(self.settings)[0]  # generated into the data dir before any child reads it
        self._register_accounts(upstream)
        api_port = pick_port(self.settings.port, set())
        dash_port = pick_port(self.settings.dashboard_port, {api_port})
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.dashboard_url = f"http://127.0.0.1:{dash_port}/"
        self._spawn("api", "serve", "--host", "127.0.0.1", "--port", str(api_port))
        self._spawn("workers", "worker", "--processes", "2")
        if importlib.util.find_spec("rq_dashboard") is not None:
            self._spawn("dashboard", "dashboard", "--host", "127.0.0.1", "--port", str(dash_port))
        else:
            self.dashboard_url = "not started: rq-dashboard is not installed (pip install 'dispatcher[dashboard]')"
        self._wait_ready()
        self.say(f"api        {self.api_url}  ·  workers: 2 processes  ·  dashboard {self.dashboard_url}")

    def _register_accounts(self, upstream: str) -> None:
        self.accounts = demo_accounts()
        with httpx.Client(base_url=upstream, timeout=10) as admin:
            for a in self.accounts:
                res = admin.post("/_sandbox/users", json={"provider": a.provider, "concurrency": a.body["maxJobs"],
                                                          **a.upstream})
                res.raise_for_status()
                if a.provider == "minimax":
                    a.body["token"] = res.json()["token"]  # the sandbox minted a pasted-style token
                view = self.d.upsert_account(a.provider, dict(a.body), a.path_id)
                a.id = view[providers.get(a.provider).id_field]
        slots = sum(a.body["maxJobs"] for a in self.accounts)
        self.say(f"accounts   {len(self.accounts)} on {len({a.provider for a in self.accounts})} providers, "
                 f"{slots} slots in all")

    def _child_env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "DISPATCHER_REDIS_URL": self.settings.redis_url,
            "DISPATCHER_UPSTREAM_URL": self.settings.upstream_url,
            "DISPATCHER_DATA_DIR": str(self.data_dir),
            "DISPATCHER_LOG_FORMAT": "json",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")])),
        })
        return env

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.cli", *args], env=self._child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def _wait_ready(self) -> None:
        from rq import Worker

        deadline = time.monotonic() + STARTUP_TIMEOUT
        pending = {"api", "workers"} | ({"dashboard"} & set(self.children))
        with httpx.Client(timeout=2) as http:
            while pending:
                for name, proc in self.children.items():
                    if proc.poll() is not None:
                        raise ConfigurationError(f"the demo's {name} process exited with {proc.returncode}; "
                                                 f"see {self.log_dir / (name + '.log')}")
                if "api" in pending and _answers(http, f"{self.api_url}/health"):
                    pending.discard("api")
                if "dashboard" in pending and _answers(http, self.dashboard_url):
                    pending.discard("dashboard")
                if "workers" in pending and Worker.count(connection=self.d.rq) >= 2:
                    pending.discard("workers")
                if pending and time.monotonic() > deadline:
                    raise ConfigurationError(f"{', '.join(sorted(pending))} did not start within "
                                             f"{STARTUP_TIMEOUT:.0f}s; see {self.log_dir}")
                if pending:
                    time.sleep(0.2)

    # -- run ------------------------------------------------------------------------
    def submit(self) -> list[str]:
        names = sorted({a.provider for a in self.accounts})
        ids = []
        for i in range(self.jobs):
            provider = names[i % len(names)]
            spec = providers.get(provider)
            operation = OPERATIONS[provider]
            if spec.operations and operation not in spec.operations:
                operation = spec.operations[0]
            payload = {"prompt": f"demo generation {i + 1}", "sandbox_duration": round(self.rng.uniform(1.0, 4.0), 2)}
            ids.append(self.d.submit(provider, operation, payload).id)
        self.say(f"submitted  {len(ids)} generations across {len(names)} providers")
        return ids

    def snapshot(self, ids: list[str]) -> dict:
        from .status import collect

        gens = [g for g in self.d.generations.many(ids) if g is not None]
        counts = {s: 0 for s in STATES}
        for g in gens:
            counts[g.state] = counts.get(g.state, 0) + 1
        return {"status": collect(self.d), "counts": counts, "done": sum(counts[s] for s in TERMINAL),
                "total": len(ids)}

    def watch(self, ids: list[str], timeout: float) -> bool:
        """Show progress until every generation ends; False on timeout."""
        began = time.monotonic()
        deadline = began + timeout
        if self.tty:
            return self._watch_live(ids, began, deadline)
        last = None
        while True:
            snap = self.snapshot(ids)
            c = snap["counts"]
            line = (f"completed {c['completed']}/{snap['total']} · failed {c['failed']} · running "
                    f"{c['admitted'] + c['submitted']} · waiting {c['waiting']}")
            if line != last:
                self.say(f"[{time.monotonic() - began:6.1f}s] {line}")
                last = line
            if snap["done"] >= snap["total"]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def _watch_live(self, ids, began, deadline) -> bool:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("generations"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        task = progress.add_task("generations", total=len(ids))
        console = Console(file=self.out)
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while True:
                snap = self.snapshot(ids)
                progress.update(task, completed=snap["done"])
                live.update(_live_view(snap, progress))
                if snap["done"] >= snap["total"]:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.25)

    # -- summary ----------------------------------------------------------------------
    def summary(self, ids: list[str], elapsed: float) -> bool:
        gens = [g for g in self.d.generations.many(ids) if g is not None]
        by_state = {s: sum(1 for g in gens if g.state == s) for s in STATES}
        ok = by_state[COMPLETED] == len(ids)
        self.say("")
        self.say(f"summary    {by_state['completed']}/{len(ids)} completed, {by_state['failed']} failed, "
                 f"{by_state['canceled']} canceled, {len(ids) - sum(by_state[s] for s in TERMINAL)} unfinished "
                 f"in {elapsed:.1f}s")
        self.say("per account:")
        per: dict[tuple[str, str], int] = {}
        for g in gens:
            if g.state == COMPLETED:
                per[(g.provider, g.account)] = per.get((g.provider, g.account), 0) + 1
        for a in self.accounts:
            self.say(f"  {a.provider:<10} {a.id:<40} maxJobs {a.body['maxJobs']}  "
                     f"completed {per.get((a.provider, a.id), 0)}")
        durations = [g.finished_at - g.created for g in gens if g.state == COMPLETED and g.finished_at]
        waits = [g.admitted_at - g.created for g in gens if g.admitted_at]
        self.say(f"durations  submit→done  p50 {_secs(percentile(durations, 50))}  "
                 f"p95 {_secs(percentile(durations, 95))}  max {_secs(max(durations, default=None))}")
        self.say(f"waiting    submit→slot  p50 {_secs(percentile(waits, 50))}  p95 {_secs(percentile(waits, 95))}")
        try:
            stats = httpx.get(f"{self.sandbox.url}/_sandbox/stats", timeout=5).json()
            self.say(f"upstream   {stats['violations']} concurrency violations, {stats['duplicates']} duplicate "
                     "submissions (the sandbox counts both)")
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        self.say("")
        self.say(f"API docs   {self.api_url}/docs")
        self.say(f"dashboard  {self.dashboard_url}")
        self.say(f"metrics    {self.api_url}/metrics")
        probe = f"{self.api_url}/v1/runwayml/scheduler/available"
        answered = _probe(probe, self.token)
        self.say(f"try        curl -s -H \"Authorization: Bearer {self._token_shell()}\" {probe}"
                 + ("" if answered == 200 else f"   (answered {answered})"))
        self.say(f"logs       {self.log_dir}")
        return ok

    def _token_shell(self) -> str:
        """The API token as a shell expression, so the token itself never lands in a terminal log."""
        if not self.settings.api_tokens:
            return f"$(cat {self.data_dir / 'api_token'})"
        if len(self.settings.api_tokens) == 1:
            return "$DISPATCHER_API_TOKENS"
        return "<one of DISPATCHER_API_TOKENS>"

    def stay_up(self) -> None:
        self.say("")
        self.say("Everything keeps running: open the URLs above. Press Ctrl-C to stop.")
        while True:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    self.say(f"the {name} process exited ({proc.returncode}); see {self.log_dir / (name + '.log')}")
                    return
            time.sleep(1.0)

    # -- stop ---------------------------------------------------------------------------
    def stop(self) -> None:
        for name in ("dashboard", "api", "workers"):
            proc = self.children.get(name)
            if proc is not None:
                _terminate(proc)
        if self.d is not None:
            self._remove_accounts()
            self.d.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis is not None:
            self.redis.stop()


    def _remove_accounts(self) -> None:
        """The demo's accounts hold sandbox tokens: leave none behind for a later `dispatcher serve`."""
        import redis

        for a in self.accounts:
            if a.id is None:
                continue
            try:
                self.d.delete_account(a.provider, a.id)
            except (DispatcherError, redis.RedisError):
                pass


def _live_view(snap: dict, progress):
    from rich.console import Group
    from rich.table import Table

    table = Table(title="accounts (■ busy slot, □ free slot)", title_justify="left", expand=False)
    for column in ("provider", "account", "slots", "waiting line"):
        table.add_column(column)
    for provider, p in snap["status"]["providers"].items():
        first = True
        for a in p["accounts"]:
            used, cap = a["executing"], a["maxJobs"]
            bar = "[bold green]" + "■" * used + "[/]" + "□" * max(0, cap - used) + f" {used}/{cap}"
            line = ("[yellow]" + "▪" * min(p["waiting"], 30) + f"[/] {p['waiting']}") if first else ""
            table.add_row(provider if first else "", a["id"], bar, line)
            first = False
    states = Table(title="generations", title_justify="left")
    for s in STATES:
        states.add_column(s)
    states.add_row(*(str(snap["counts"].get(s, 0)) for s in STATES))
    return Group(table, states, progress)


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it if the demo dies without cleaning up (SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code < 500
    except httpx.HTTPError:
        return False


def _probe(url: str, token: str) -> int | str:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _terminate(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), then SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _mask(url: str) -> str:
    from .status import mask_url

    return mask_url(url)


def run_demo(settings, *, once: bool = False, jobs: int = 36, out=None) -> int:
    """Run the demo; returns the process exit code (0: every generation completed)."""
    out = out or sys.stdout
    if not 1 <= jobs <= 1000:
        print("error: --jobs must be between 1 and 1000", file=sys.stderr)
        return 2
    dlog.configure(settings.log_format, "warning")  # the terminal shows the demo; children log to files
    previous = signal.signal(signal.SIGTERM, _interrupt)
    demo = Demo(settings, jobs=jobs, out=out)
    code = 1
    try:
        demo.start()
        began = time.monotonic()
        ids = demo.submit()
        finished = demo.watch(ids, timeout=60.0 + 6.0 * jobs)
        if not finished:
            demo.say("timed out waiting for the generations")
        code = 0 if demo.summary(ids, time.monotonic() - began) and finished else 1
        if not once:
            demo.stay_up()
    except KeyboardInterrupt:
        demo.say("")
        demo.say("interrupted")
        code = code if code == 0 else 130
    except (DispatcherError, httpx.HTTPError, RuntimeError) as exc:
        print(f"error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        code = 1
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        demo.say("stopping everything the demo started…")
        demo.stop()
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, previous)
    return code


def _interrupt(signum, frame):
    raise KeyboardInterrupt
