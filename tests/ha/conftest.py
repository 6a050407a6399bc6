"""A real Redis primary, one replica and three sentinels on loopback (Debian's `redis-server` and
`redis-sentinel`), for the failover tests.

The binaries are taken from PATH; when they are missing and the tests run as root, the session
installs them with apt-get (bounded in time), otherwise the tests are skipped with the reason.
Every server listens on 127.0.0.1 only, on free ports, with a password, no persistence (the
replica is the copy), in the test's tmp dir; all are SIGKILLed at the end.

Overriding `redis_url` (and `r`) here points the shared fixtures (`settings`, `dispatcher`,
`api`, `fleet`) at the sentinels: `redis+sentinel://:<password>@<3 sentinels>/<service>/0`; the
sentinels have a password of their own, given as `DISPATCHER_REDIS_SENTINEL_PASSWORD`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

SERVICE = "dsp-primary"
PASSWORD = "ha-Pa55word-never-shown"  # the Redis servers' (in the URL)
SENTINEL_PASSWORD = "ha-sentinel-Pa55-never-shown"  # the sentinels' own (DISPATCHER_REDIS_SENTINEL_PASSWORD)
DOWN_AFTER_MS = 1000  # sentinels call the primary down after this long without an answer
APT_TIMEOUT = 300  # seconds apt-get may take, in all


def _binaries() -> tuple[str | None, str | None]:
    server = shutil.which("redis-server")
    return server, shutil.which("redis-sentinel") or server  # `redis-server --sentinel` does the same


@pytest.fixture(scope="session")
def redis_binaries() -> tuple[str, str]:
    server, sentinel = _binaries()
    if server is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        deadline = time.monotonic() + APT_TIMEOUT
        for command in (["apt-get", "install", "-y", "-q", "redis-server", "redis-sentinel"],
                        ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "redis-server", "redis-sentinel"]):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                subprocess.run(command, env=env, capture_output=True, timeout=left, check=False)
            except subprocess.TimeoutExpired:
                break
            server, sentinel = _binaries()
            if server is not None:
                break
    if server is None:
        why = "not root, so not installed" if not (hasattr(os, "geteuid") and os.geteuid() == 0) else \
            "apt-get could not install them"
        pytest.skip(f"redis-server / redis-sentinel are not on PATH ({why}): apt-get install redis-server "
                    "redis-sentinel")
    return server, sentinel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One redis-server or sentinel process, with its config file in its own dir."""

    def __init__(self, binary: str, root: Path, name: str, lines: list[str], *, sentinel: bool = False):
        self.binary, self.name, self.sentinel = binary, name, sentinel
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        self.conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
                                        f"logfile {self.dir / 'log'}", "daemonize no", *lines]) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Node":
        args = [self.binary, str(self.conf)]
        if self.sentinel and not self.binary.endswith("sentinel"):
            args.append("--sentinel")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def client(self, **kw) -> redis.Redis:
        auth = {"password": SENTINEL_PASSWORD if self.sentinel else PASSWORD}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1,
                           decode_responses=True, **auth, **kw)

    def wait_up(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as c:
                    c.ping()
                return
            except redis.RedisError:
                assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited: {self.log()}"
                assert time.monotonic() < deadline, f"{self.name} did not start: {self.log()}"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class HaRedis:
    """Primary + replica + three sentinels (quorum 2), all on loopback."""

    password = PASSWORD  # the servers' (in the URL)
    sentinel_password = SENTINEL_PASSWORD

    def __init__(self, binaries: tuple[str, str], root: Path):
        server, sentinel = binaries
        common = [f"requirepass {PASSWORD}", f"masterauth {PASSWORD}", 'save ""', "appendonly no",
                  "repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
        self.primary = Node(server, root, "primary", common)
        self.replica = Node(server, root, "replica", [*common, f"replicaof 127.0.0.1 {self.primary.port}"])
        self.sentinels = [
            Node(sentinel, root, f"sentinel-{i}", [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                f"sentinel auth-pass {SERVICE} {PASSWORD}",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} 10000",
                f"sentinel parallel-syncs {SERVICE} 1",
                f"requirepass {SENTINEL_PASSWORD}",  # sentinels authenticate to each other with it too
            ], sentinel=True)
            for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{hosts}/{SERVICE}/0"

    def start(self) -> "HaRedis":
        for node in (self.primary, self.replica):
            node.start().wait_up()
        for s in self.sentinels:
            s.start().wait_up()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the replica is in sync and every sentinel knows the replica and the two other sentinels."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.replica.client() as c:
                    synced = c.info("replication").get("master_link_status") == "up"
                seen = all(len(s.client().sentinel_slaves(SERVICE)) >= 1
                           and len(s.client().sentinel_sentinels(SERVICE)) >= 2 for s in self.sentinels)
                if synced and seen:
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"sentinels not ready: {self.sentinels[0].log()}"
            time.sleep(0.1)

    def primary_port(self) -> int | None:
        """The primary's port, as the sentinels (a majority) tell it now."""
        ports = []
        for s in self.sentinels:
            try:
                with s.client() as c:
                    addr = c.sentinel_get_master_addr_by_name(SERVICE)
                ports.append(int(addr[1]) if addr else None)
            except redis.RedisError:
                ports.append(None)
        best = max(set(ports), key=ports.count)
        return best if ports.count(best) >= 2 else None

    def wait_promoted(self, timeout: float = 60) -> float:
        """Until the sentinels name the replica as the primary; returns time.monotonic() then."""
        deadline = time.monotonic() + timeout
        while self.primary_port() != self.replica.port:
            assert time.monotonic() < deadline, f"no failover: {self.sentinels[0].log()}"
            time.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.primary):
            node.kill()


@pytest.fixture
def ha(redis_binaries, tmp_path):
    cluster = HaRedis(redis_binaries, tmp_path / "ha")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(ha) -> str:
    return ha.url


@pytest.fixture
def settings(settings):
    """The shared settings, plus the sentinels' password (workers get it through the environment)."""
    return settings.with_(redis_sentinel_password=SENTINEL_PASSWORD)


@pytest.fixture
def r(redis_url):
    """A clean database on the current primary, found through the sentinels."""
    from dispatcher.connection import connect

    client = connect(redis_url, sentinel_password=SENTINEL_PASSWORD)
    client.flushdb()
    yield client
    client.close()
