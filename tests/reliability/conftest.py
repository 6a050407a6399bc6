"""Helpers shared by the reliability tests (fixtures, since test files cannot import each other)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dispatcher import keys
from dispatcher.generations import LIVE

PASSWORD = "rel-Pa55word-never-shown-{}"


@dataclass
class Rig:
    """A dispatcher with sandbox-backed accounts, plus the checks every reliability test ends with."""

    d: object
    sandbox: object
    provider: str = "runwayml"
    accounts: dict = field(default_factory=dict)  # id -> maxJobs

    def add_accounts(self, n: int, max_jobs: int, *, duration: float = 1.0, **user) -> list[str]:
        """Upstream users whose concurrency equals maxJobs: any oversubscription is a sandbox violation."""
        ids = []
        for i in range(len(self.accounts), len(self.accounts) + n):
            email, password = f"rel-{i}@example.com", PASSWORD.format(i)
            res = self.sandbox.post("/_sandbox/users", json={
                "provider": self.provider, "email": email, "password": password, "concurrency": max_jobs,
                "duration": duration, **user})
            assert res.status_code == 201, res.text
            self.d.upsert_account(self.provider, {"email": email, "password": password, "maxJobs": max_jobs})
            self.accounts[email] = max_jobs
            ids.append(email)
        return ids

    def wait_workers(self, n: int, timeout: float = 60) -> None:
        """Until n RQ workers have registered (worker processes take seconds to start on a busy machine)."""
        from rq import Worker

        deadline = time.monotonic() + timeout
        while Worker.count(connection=self.d.core.rq) < n:
            assert time.monotonic() < deadline, f"{n} workers did not start within {timeout}s"
            time.sleep(0.1)

    def passwords(self) -> list[str]:
        return [PASSWORD.format(i) for i in range(len(self.accounts))]

    def submit(self, n: int, *, durations=(1.0,), start: int = 0) -> list[str]:
        """n generations, each with a unique prompt (so a second upstream submission shows as a duplicate)."""
        ids = []
        for i in range(start, start + n):
            payload = {"promptText": f"reliability {i}", "sandbox_duration": durations[i % len(durations)]}
            ids.append(self.d.submit(self.provider, "gen3a_turbo", payload).id)
        return ids

    def states(self, ids: list[str]) -> dict[str, str | None]:
        out = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for gid, gen in zip(chunk, self.d.core.generations.many(chunk)):
                out[gid] = None if gen is None else gen.state
        return out

    def wait_finished(self, ids: list[str], timeout: float, interval: float = 0.25) -> dict[str, str | None]:
        """Wait until none of `ids` is live (generous timeout); returns id -> final state."""
        deadline = time.monotonic() + timeout
        pending = list(ids)
        final: dict[str, str | None] = {}
        while True:
            states = self.states(pending)
            final.update(states)
            pending = [g for g, s in states.items() if s in LIVE]
            if not pending or time.monotonic() > deadline:
                return {g: final[g] for g in ids}
            time.sleep(interval)

    def upstream(self) -> dict:
        res = self.sandbox.get("/_sandbox/stats", params={"provider": self.provider})
        res.raise_for_status()
        return res.json()

    def leftover_capacity(self) -> dict:
        """Everything that would show a leaked slot: executing counts, holders, leases, start marks."""
        snap = self.d.core.capacity(self.provider).snapshot()
        r = self.d.core.r
        p = self.provider
        return {
            "executing": {a: v["executing"] for a, v in snap["accounts"].items() if v["executing"]},
            "holders": r.hlen(keys.holder(p)), "leases": r.zcard(keys.leases(p)),
            "used": r.hlen(keys.used(p)), "started": r.hlen(keys.started(p)),
            "waiting": snap["waiting"],
        }

    def assert_clean_finish(self, ids: list[str], states: dict) -> dict:
        """Every generation completed, upstream saw each exactly once and never over capacity, no slot leaked."""
        not_done = {g: s for g, s in states.items() if s != "completed"}
        assert not not_done, f"{len(not_done)} not completed, e.g. {list(not_done.items())[:5]}"
        stats = self.upstream()
        assert stats["violations"] == 0, stats
        assert stats["duplicates"] == 0, stats
        submitted = sum(u["submitted"] for u in stats["users"].values())
        assert submitted == len(ids), f"upstream accepted {submitted} jobs for {len(ids)} generations"
        for account, user in stats["users"].items():
            assert user["max_concurrent"] <= self.accounts[account], (account, user)
        left = self.leftover_capacity()
        assert left == {"executing": {}, "holders": 0, "leases": 0, "used": 0, "started": 0, "waiting": 0}, left
        return stats


@pytest.fixture
def rig(dispatcher, sandbox):
    return Rig(dispatcher, sandbox)


@pytest.fixture
def events():
    from dispatcher.logging import parse_json_lines

    return parse_json_lines


def epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def to_epoch():
    return epoch


def processes_of(data_dir: Path) -> list[int]:
    """Every live process started with DISPATCHER_DATA_DIR=data_dir (worker processes and their children)."""
    found = []
    needle = f"DISPATCHER_DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def worker_processes():
    """A function: pids of live processes carrying a data dir (to find leaked children)."""
    return processes_of


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def rss():
    return rss_kib

