"""The cost of `DISPATCHER_REDIS_WAIT_REPLICAS=1`: submit latency with and without `WAIT 1 <ms>`.

    python bench/replica_wait.py [--submits 300] [--rounds 5] [--wait-ms 100]

Starts, in a temporary directory, a real Redis primary and one replica on loopback (the
`redis-server` on PATH, e.g. Debian's: `apt-get install redis-server`), the sandbox upstream
(accounts log in there), and two `Dispatcher`s on the primary: one plain, one that WAITs for the
replica after each submit's transaction. Each round times --submits submits through each, side
by side (interleaved: plain, WAIT, plain, …), with no workers: the time is the submit alone (the first 50 are
admitted, the rest join the waiting line, the same for both sides). Figures are medians over --rounds rounds of each round's median; the PING round trip is
measured in the same rounds for scale.

The last line is machine-readable:

    wait_over_plain=<x> submit_ms_plain=<a> submit_ms_wait=<b> wait_extra_ms=<b-a> ping_ms=<p> unconfirmed=<n>
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench._common import Stack  # noqa: E402

PASSWORD = "bench-replica-Pa55"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, root: Path, name: str, extra: list[str]):
        self.port = free_port()
        folder = root / name
        folder.mkdir()
        conf = folder / "redis.conf"
        conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", f"dir {folder}", 'save ""',
                                   "appendonly no", f"requirepass {PASSWORD}", f"masterauth {PASSWORD}",
                                   f"logfile {folder / 'log'}", *extra]) + "\n")
        self.proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, password=PASSWORD, decode_responses=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server {name} did not start")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(timeout=10)


UNCONFIRMED = [0]  # submits refused because no replica acknowledged in --wait-ms (timed all the same)


def timed_submit(d, prompt: str) -> float:
    from dispatcher.errors import StoreUnavailable

    began = time.perf_counter()
    try:
        d.submit("runwayml", "gen3a_turbo", {"promptText": prompt})
    except StoreUnavailable:
        UNCONFIRMED[0] += 1
    return (time.perf_counter() - began) * 1000


def timed_pairs(plain, waiting, n: int, tag: str) -> tuple[list[float], list[float]]:
    """n submits through each, interleaved (plain, WAIT, plain, …): both sides share the machine's state."""
    a, b = [], []
    for i in range(n):
        a.append(timed_submit(plain, f"{tag} plain {i}"))
        b.append(timed_submit(waiting, f"{tag} wait {i}"))
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=300, help="submits per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wait-ms", type=int, default=100, help="DISPATCHER_REDIS_WAIT_MS")
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="dispatcher-replica-wait-") as tmp, Stack() as stack:
        primary = Server(binary, Path(tmp), "primary", [])
        replica = Server(binary, Path(tmp), "replica", [f"replicaof 127.0.0.1 {primary.port}"])
        try:
            while replica.client.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
            base = stack.settings.with_(redis_url=primary.url)
            plain = stack_dispatcher(stack, base)
            waiting = stack_dispatcher(stack, base.with_(redis_wait_replicas=1, redis_wait_ms=args.wait_ms))
            stack.add_accounts(plain, "runwayml", count=5, max_jobs=10, concurrency=10, duration=60)
            timed_pairs(plain, waiting, 20, "warm")
            rows = []
            for r in range(args.rounds):
                pings = []
                for _ in range(50):
                    began = time.perf_counter()
                    plain.core.r.ping()
                    pings.append((time.perf_counter() - began) * 1000)
                a, b = (statistics.median(side) for side in timed_pairs(plain, waiting, args.submits, f"round {r}"))
                rows.append((a, b, statistics.median(pings)))
                print(f"round {r + 1}: submit plain {a:.3f} ms   with WAIT 1 {b:.3f} ms   ping {rows[-1][2]:.3f} ms")
            unconfirmed = UNCONFIRMED[0]
            a, b, p = (statistics.median(col) for col in zip(*rows))
            print(f"medians over {args.rounds} rounds of {args.submits} submits each (primary + replica on loopback)")
            print(f"wait_over_plain={b / a:.3f} submit_ms_plain={a:.3f} submit_ms_wait={b:.3f} "
                  f"wait_extra_ms={b - a:.3f} ping_ms={p:.3f} unconfirmed={unconfirmed}")
        finally:
            replica.stop()
            primary.stop()


def stack_dispatcher(stack, settings):
    from dispatcher.client import Dispatcher

    d = Dispatcher(settings.redis_url, settings)
    stack._dispatchers.append(d)
    return d


if __name__ == "__main__":
    main()
