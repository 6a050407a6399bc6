"""`dispatcher demo` (`make demo`): the whole system on one machine, watched live.

Starts the embedded Redis (unless `DISPATCHER_REDIS_URL` is set), the sandbox
upstream, the HTTP API (`dispatcher serve`), two worker processes
(`dispatcher worker --processes 2`) and rq-dashboard (`dispatcher dashboard`);
registers every provider's demo accounts (sandbox users + `upsert_account`,
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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import logging as dlog
from .. import providers, rq_glue
from ..client import Dispatcher
from ..errors import ConfigurationError, DispatcherError
from ..generations import COMPLETED, TERMINAL
from ..logging import mask_url
from ..overview import collect
from ..sandbox import SandboxProcess
from ..secrets import api_tokens
from .demo_view import STATES, live_view, outcome_lines
from .processes import answers, die_with_parent, pick_port, probe, terminate
from .redis_server import EmbeddedRedis

_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `dispatcher` package
STARTUP_TIMEOUT = 90.0


@dataclass
class DemoAccount:
    provider: str
    upstream: dict  # body for the sandbox's POST /_sandbox/users
    body: dict  # body for Dispatcher.upsert_account (maxJobs included)
    path_id: str | None
    sandbox_fields: tuple[str, ...] = ()  # copied from the sandbox's answer into `body`
    id: str | None = None  # known after login (Riffusion's comes from the upstream)


def demo_accounts() -> list[DemoAccount]:
    """Every provider's demo accounts (`ProviderSpec.demo`, in its folder); fresh credentials every run."""
    return [DemoAccount(spec.name, a.upstream, a.body, a.path_id, a.sandbox_fields)
            for spec in providers.all_specs() if spec.demo is not None for a in spec.demo.accounts()]


class Demo:
    def __init__(self, settings, *, jobs: int, out=None, seed: int | None = None, upstream: str = "direct"):
        self.settings = settings
        self.upstream = upstream  # direct: the sandbox's providers; useapi: its useapi.net emulation
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
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.redis_url:
            redis_url = self.settings.redis_url
            self.say(f"redis      {mask_url(redis_url)} (DISPATCHER_REDIS_URL: demo accounts are added there "
                     "and removed when the demo stops)")
        else:
            embedded = EmbeddedRedis(self.data_dir, maxmemory=self.settings.redis_maxmemory)
            running = embedded.is_running()
            redis_url = embedded.start()
            if not running:
                self.redis = embedded
            self.say(f"redis      {mask_url(redis_url)} (embedded, AOF in {embedded.dir}, password in "
                     f"{embedded.password_file})")
        self.sandbox = SandboxProcess()
        upstream = self.sandbox.start()
        self.say(f"sandbox    {upstream} (simulated {', '.join(spec.title for spec in providers.all_specs())})")
        self.settings = self.settings.with_(redis_url=redis_url, upstream_url=upstream, data_dir=self.data_dir)
        if self.upstream == "useapi":
            self._use_useapi(upstream)
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

    def _use_useapi(self, sandbox: str) -> None:
        """Every provider through the sandbox's useapi.net emulation, with a fresh useapi token."""
        token = secrets.token_urlsafe(24)
        httpx.post(f"{sandbox}/_sandbox/useapi-tokens", json={"token": token}, timeout=10).raise_for_status()
        self.settings = self.settings.with_(upstream="useapi", upstreams=(), useapi_url=f"{sandbox}/useapi",
                                            useapi_token=token)
        self.say(f"useapi     {sandbox}/useapi (the sandbox's useapi.net; every provider goes through it)")

    def _register_accounts(self, upstream: str) -> None:
        self.accounts = demo_accounts()
        with httpx.Client(base_url=upstream, timeout=10) as admin:
            for a in self.accounts:
                res = admin.post("/_sandbox/users", json={"provider": a.provider, "concurrency": a.body["maxJobs"],
                                                          **a.upstream})
                res.raise_for_status()
                a.body.update({name: res.json()[name] for name in a.sandbox_fields})  # e.g. a minted token
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
            "DISPATCHER_UPSTREAM": self.settings.upstream,
            "DISPATCHER_UPSTREAMS": ",".join(self.settings.upstreams),
            "DISPATCHER_USEAPI_URL": self.settings.useapi_url,
            "DISPATCHER_USEAPI_TOKEN": self.settings.useapi_token or "",
            "DISPATCHER_DATA_DIR": str(self.data_dir),
            "DISPATCHER_LOG_FORMAT": "json",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")])),
        })
        return env

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.ops.cli", *args], env=self._child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        pending = {"api", "workers"} | ({"dashboard"} & set(self.children))
        with httpx.Client(timeout=2) as http:
            while pending:
                for name, proc in self.children.items():
                    if proc.poll() is not None:
                        raise ConfigurationError(f"the demo's {name} process exited with {proc.returncode}; "
                                                 f"see {self.log_dir / (name + '.log')}")
                if "api" in pending and answers(http, f"{self.api_url}/health"):
                    pending.discard("api")
                if "dashboard" in pending and answers(http, self.dashboard_url):
                    pending.discard("dashboard")
                if "workers" in pending and rq_glue.worker_count(self.d.core.rq) >= 2:
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
            operation = spec.demo.operation
            payload = {"prompt": f"demo generation {i + 1}", "sandbox_duration": round(self.rng.uniform(1.0, 4.0), 2)}
            ids.append(self.d.submit(provider, operation, payload).id)
        self.say(f"submitted  {len(ids)} generations across {len(names)} providers")
        return ids

    def snapshot(self, ids: list[str]) -> dict:
        gens = [g for g in self.d.core.generations.many(ids) if g is not None]
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
        progress = Progress(TextColumn("generations"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        task = progress.add_task("generations", total=len(ids))
        console = Console(file=self.out)
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while True:
                snap = self.snapshot(ids)
                progress.update(task, completed=snap["done"])
                live.update(live_view(snap, progress))
                if snap["done"] >= snap["total"]:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.25)

    # -- summary ----------------------------------------------------------------------
    def summary(self, ids: list[str], elapsed: float) -> bool:
        gens = [g for g in self.d.core.generations.many(ids) if g is not None]
        ok = sum(1 for g in gens if g.state == COMPLETED) == len(ids)
        self.say("")
        for line in outcome_lines(gens, len(ids), elapsed, self.accounts):
            self.say(line)
        try:
            stats = httpx.get(f"{self.sandbox.url}/_sandbox/stats", timeout=5).json()
            self.say(f"upstream   {stats['violations']} concurrency violations, {stats['duplicates']} duplicate "
                     "submissions (the sandbox counts both)")
            if self.upstream == "useapi":
                u = stats["useapi"]
                self.say(f"useapi     {u['calls']} calls, {u['violations']} violations, {u['expired_token_requests']} "
                         f"requests on an expired session, {u['rejected_429']} answered 429 (busy)")
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        self.say("")
        self.say(f"API docs   {self.api_url}/docs")
        self.say(f"dashboard  {self.dashboard_url}")
        self.say(f"metrics    {self.api_url}/metrics")
        example = f"{self.api_url}{providers.all_specs()[0].api_prefix}/scheduler/available"
        answered = probe(example, self.token)
        self.say(f"try        curl -s -H \"Authorization: Bearer {self._token_shell()}\" {example}"
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
                terminate(proc)
        if self.d is not None:
            self._remove_accounts()
            self.d.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis is not None:
            self.redis.stop()

    def _remove_accounts(self) -> None:
        """The demo's accounts hold sandbox tokens: leave none behind for a later `dispatcher serve`."""
        for a in self.accounts:
            if a.id is None:
                continue
            try:
                self.d.delete_account(a.provider, a.id)
            except (DispatcherError, redis.RedisError):
                pass


def run_demo(settings, *, once: bool = False, jobs: int = 36, out=None, upstream: str = "direct") -> int:
    """Run the demo; returns the process exit code (0: every generation completed)."""
    out = out or sys.stdout
    if not 1 <= jobs <= 1000:
        print("error: --jobs must be between 1 and 1000", file=sys.stderr)
        return 2
    dlog.configure(settings.log_format, "warning")  # the terminal shows the demo; children log to files
    previous = signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a shell's background job
    # passes SIGINT on ignored, and Python then installs no KeyboardInterrupt handler of its own)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    demo = Demo(settings, jobs=jobs, out=out, upstream=upstream)
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
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        demo.say("stopping everything the demo started…")
        demo.stop()
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
    return code


def _interrupt(signum, frame):
    raise KeyboardInterrupt
