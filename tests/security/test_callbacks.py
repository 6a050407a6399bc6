"""replyUrl callbacks against hostile receivers (issue 15, items 1, 3 and 4), on real worker processes.

Every receiver is a small threaded HTTP server on 127.0.0.1 started by the test, each connection
bounded in time. Durations are never asserted: bounded waits are timeouts only.
"""

from __future__ import annotations

import functools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30


# -- receivers ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """About 1 MiB of gzip that inflates to 1 GiB of zeros."""
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20)
    return b"".join([packer.compress(zeros) for _ in range(1024)] + [packer.flush()])


class Receiver:
    """A loopback webhook endpoint. `behaviour(handler, index)` answers request `index` (0-based);
    every request is recorded, with how many were open at once."""

    def __init__(self, behaviour, lifetime: float = 90.0):
        self.requests: list[dict] = []
        self.open = self.most_open = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    index = len(outer.requests)
                    outer.requests.append({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                    outer.open += 1
                    outer.most_open = max(outer.most_open, outer.open)
                try:
                    behaviour(self, index, time.monotonic() + lifetime, outer.stop)
                except OSError:
                    pass  # the worker went away: what a bounded delivery does
                finally:
                    with outer.lock:
                        outer.open -= 1
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.requests) >= count

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def answer_204(handler, index, until, stop):
    handler.send_response(204)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def answer_bomb(handler, index, until, stop):
    bomb = gzip_bomb()
    handler.send_response(500)
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(bomb)))
    handler.end_headers()
    handler.wfile.write(bomb)


def answer_drip(handler, index, until, stop):
    """One byte of a never-ending status line and header every 0.5 s."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 10_000:
        if stop.is_set() or time.monotonic() > until:
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        if stop.wait(0.5):
            return


def answer_gib(handler, index, until, stop):
    """A 1 GiB answer, streamed as fast as the client reads it."""
    handler.send_response(500)
    handler.send_header("Content-Length", str(GIB))
    handler.end_headers()
    chunk = b"x" * 65536
    for _ in range(GIB // len(chunk)):
        if stop.is_set() or time.monotonic() > until:
            return
        handler.wfile.write(chunk)


def hold_first(handler, index, until, stop):
    """The first request is never answered: held until the client's connection closes. Later: 204."""
    if index:
        return answer_204(handler, index, until, stop)
    sock = handler.connection
    while not stop.is_set() and time.monotonic() < until:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable and not sock.recv(1):
            return  # the worker's end closed (it was killed)


@pytest.fixture
def receivers():
    made = []

    def make(behaviour, **kw):
        made.append(Receiver(behaviour, **kw))
        return made[-1]

    yield make
    for rec in made:
        rec.close()


# -- processes ---------------------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes_of(data_dir: Path) -> list[int]:
    """Live processes started with DISPATCHER_DATA_DIR=data_dir: the workers and their children."""
    needle, found = f"DISPATCHER_DATA_DIR={data_dir}".encode(), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0") \
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def workers_by_role(d) -> dict[str, list]:
    """Live RQ workers: those serving the callback queue only, and the others."""
    from rq import Worker

    from dispatcher.steps import CALLBACK_QUEUE

    out: dict[str, list] = {"callbacks": [], "steps": []}
    for w in Worker.all(connection=d.core.rq):
        if not gone(w.pid):
            out["callbacks" if w.queue_names() == [CALLBACK_QUEUE] else "steps"].append(w)
    return out


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


class RssWatch(threading.Thread):
    """Samples VmRSS of every worker process (and child) until stopped; growth over the first sample."""

    def __init__(self, data_dir: Path):
        super().__init__(daemon=True)
        self.data_dir, self.first, self.peak, self.stopping = data_dir, {}, {}, threading.Event()

    def run(self):
        while not self.stopping.wait(0.05):
            for pid in processes_of(self.data_dir):
                kib = rss_kib(pid)
                self.first.setdefault(pid, kib)
                self.peak[pid] = max(self.peak.get(pid, 0), kib)

    def growth_mib(self) -> dict[int, float]:
        return {pid: (self.peak[pid] - self.first[pid]) / 1024 for pid in self.peak}


def register(d, sandbox, email="cb@example.com", slots=4):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": email, "password": "pw-" + email,
                                          "concurrency": slots, "duration": 0.3}).raise_for_status()
    d.upsert_account("runwayml", {"email": email, "password": "pw-" + email, "maxJobs": slots}, email)


def submit(d, n, reply_url=None, tag="gen"):
    return [d.submit("runwayml", "gen3turbo/create", {"promptText": f"{tag} {i}", "sandbox_duration": 0.3},
                     reply_url=reply_url).id for i in range(n)]


def finished(d, ids) -> bool:
    return all(g is not None and g.terminal for g in d.core.generations.many(ids))


def callback_jobs(d, generation_id):
    from rq.job import Job
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    from dispatcher.steps import CALLBACK_QUEUE

    ids = set(d.core.rq.lrange(f"rq:queue:{CALLBACK_QUEUE}", 0, -1))
    for kind in (ScheduledJobRegistry, StartedJobRegistry, FailedJobRegistry, FinishedJobRegistry):
        ids |= set(kind(CALLBACK_QUEUE, connection=d.core.rq).get_job_ids(cleanup=False))
    ids = {i.decode() if isinstance(i, bytes) else i for i in ids}
    return [j for j in Job.fetch_many(sorted(ids), connection=d.core.rq) if j and j.args == (generation_id,)]


# -- tests -------------------------------------------------------------------------------------------
def test_hostile_receivers_neither_grow_nor_delay_the_workers(dispatcher, sandbox, fleet, settings, receivers):
    """A gzip bomb, a one-byte-every-0.5-s drip and a 1 GiB answer, retried, while 8 generations run."""
    register(dispatcher, sandbox)
    fleet.settings = settings.with_(callback_deadline=2.0, callback_retries=10)
    fleet.start(1)
    gzip_bomb()
    friendly = receivers(answer_204)
    submit(dispatcher, 1, friendly.url, tag="warm-up")  # every worker has imported and connected
    assert friendly.wait(1, 60), fleet.logs()[-3000:]
    watch = RssWatch(settings.data_dir)
    watch.start()
    time.sleep(0.5)

    hostile = {"bomb": receivers(answer_bomb), "drip": receivers(answer_drip), "gib": receivers(answer_gib)}
    hostile_ids = {name: submit(dispatcher, 1, rec.url, tag=name)[0] for name, rec in hostile.items()}
    for name, rec in hostile.items():
        assert rec.wait(1, 60), f"the {name} receiver was never called"
    normal = submit(dispatcher, 8, tag="normal")
    wait_until(lambda: finished(dispatcher, normal), 60, "8 generations submitted during the hostile callbacks")
    still_retried = {name: [getattr(j.get_status(), "value", None) for j in callback_jobs(dispatcher, gid)]
                     for name, gid in hostile_ids.items()}
    for name, rec in hostile.items():  # and the hostile callbacks go on being retried
        assert rec.wait(len(rec.requests) + 1, 60), f"the {name} callback was not retried"
    watch.stopping.set()
    watch.join()

    print(f"\nhostile callbacks: requests {({n: len(r.requests) for n, r in hostile.items()})}, "
          f"still retried when the 8 generations were done {still_retried}, "
          f"RSS growth MiB {({pid: round(m, 1) for pid, m in watch.growth_mib().items()})}")
    assert all(g.state == "completed" for g in dispatcher.core.generations.many(normal))
    assert all(statuses and set(statuses) <= {"queued", "scheduled", "started"}
               for statuses in still_retried.values()), still_retried
    growth = watch.growth_mib()
    assert growth and max(growth.values()) < 64, growth  # MiB over the first sample, per process
    roles = workers_by_role(dispatcher)
    assert len(roles["callbacks"]) == 1 and len(roles["steps"]) == 1, roles
    assert "dispatcher.callbacks" not in roles["steps"][0].queue_names()
    for request in hostile["bomb"].requests:
        assert request["headers"]["Accept-Encoding"] == "identity"


def test_a_callback_whose_worker_died_is_redelivered_soon_and_never_twice_at_once(
        dispatcher, sandbox, fleet, settings, receivers):
    register(dispatcher, sandbox)
    fleet.settings = settings.with_(callback_deadline=6.0)
    fleet.start(1)
    holder = receivers(hold_first)
    [gid] = submit(dispatcher, 1, holder.url, tag="held")
    assert holder.wait(1, 60), fleet.logs()[-3000:]
    [callback_worker] = wait_until(lambda: workers_by_role(dispatcher)["callbacks"], 30, "a callback worker")
    assert parent_of(callback_worker.pid) == fleet.procs[0].pid
    os.kill(callback_worker.pid, signal.SIGKILL)  # mid-delivery: the receiver holds the request

    # RQ alone would wait for the job's started entry to expire (job timeout + 60 s) and its
    # 10-minute cleanup pass; maintenance takes it over once deadline + grace has passed
    assert holder.wait(2, 60), fleet.logs()[-3000:]
    time.sleep(2.0)
    from workers.callbacks import DONE, SIGNATURE_HEADER, lock_key, verify

    assert len(holder.requests) == 2 and holder.most_open == 1  # never two deliveries at once
    second = holder.requests[1]
    assert verify(dispatcher.core.callback_secret, second["body"], second["headers"][SIGNATURE_HEADER])
    assert json.loads(second["body"])["id"] == gid
    assert dispatcher.core.r.get(lock_key(gid)) == DONE
    assert "callback taken over from a dead worker" in fleet.logs()
    assert callback_worker.pid not in [w.pid for w in workers_by_role(dispatcher)["callbacks"]]  # restarted


def test_every_pool_runs_one_supervised_callback_worker(dispatcher, fleet, settings, tmp_path):
    # --processes 1 (the fleet): the callback worker is a child that dies with its parent
    fleet.start(1)
    roles = wait_until(lambda: (lambda r: r if r["callbacks"] and r["steps"] else None)(workers_by_role(dispatcher)),
                       60, "a step and a callback worker")
    [child] = roles["callbacks"]
    assert roles["steps"][0].pid == fleet.procs[0].pid and parent_of(child.pid) == fleet.procs[0].pid
    fleet.kill(0)
    wait_until(lambda: gone(child.pid), 15, "the callback worker stopping with its SIGKILLed parent")

    # --processes 2: two step workers and one callback worker, restarted when it dies
    log = open(tmp_path / "pool.log", "ab")
    pool = subprocess.Popen([sys.executable, "-m", "workers", "--processes", "2"], env=fleet.env(), cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def three():
            r = workers_by_role(dispatcher)
            return r if len(r["callbacks"]) == 1 and len(r["steps"]) == 2 else None

        roles = wait_until(three, 60, "two step workers and one callback worker")
        assert all(parent_of(w.pid) == pool.pid for w in roles["callbacks"] + roles["steps"])
        assert all("dispatcher.callbacks" not in w.queue_names() for w in roles["steps"])
        first = roles["callbacks"][0].pid
        os.kill(first, signal.SIGKILL)
        again = wait_until(lambda: [w for w in workers_by_role(dispatcher)["callbacks"] if w.pid != first], 60,
                           "a restarted callback worker")
        assert parent_of(again[0].pid) == pool.pid
    finally:
        pool.terminate()
        pool.wait(timeout=30)
    wait_until(lambda: not processes_of(settings.data_dir), 15, "every worker process stopping with the pool")


def test_deliveries_are_bounded_and_read_raw(receivers):
    """In-process: a drip ends at the deadline, a 1 GiB answer and a gzip bomb are read 4 KiB raw."""
    from workers.callbacks import ANSWER_BYTES, post

    allow = ("127.0.0.1",)
    drip = receivers(answer_drip)
    began = time.monotonic()
    with pytest.raises(Exception) as late:
        post(drip.url, b"{}", {}, allow=allow, deadline=1.5)
    assert "Timeout" in type(late.value).__name__ and time.monotonic() - began < 30  # bounded, not timed
    for behaviour in (answer_gib, answer_bomb):
        status, answer = post(receivers(behaviour).url, b"{}", {}, allow=allow, deadline=5)
        assert status == 500 and len(answer) == ANSWER_BYTES
    assert answer == gzip_bomb()[:ANSWER_BYTES]  # the bomb's bytes, not what they inflate to


def test_signatures_carry_a_timestamp_and_replays_expire():
    from workers.callbacks import sign, sign_v1, verify

    secret, body, t = "s3cret-for-tests", b'{"id":"runwayml-1","status":"completed"}', 1_700_000_000
    header = sign_v1(secret, body, t)
    assert header.startswith(f"t={t},v1=")
    assert verify(secret, body, header, now=t + 10)
    assert verify(secret, body, header, now=t + 300) and not verify(secret, body, header, now=t + 301)  # replay
    assert not verify(secret, body, header, now=t - 301)
    assert not verify(secret, body + b" ", header, now=t)  # tampered body
    assert not verify("another-secret", body, header, now=t)
    forged = header.replace(f"t={t}", f"t={t + 1000}")  # a fresh timestamp on an old signature
    assert not verify(secret, body, forged, now=t + 1000)
    assert not verify(secret, body, sign(secret, body), now=t)  # the legacy header is not a timestamped one
    assert not verify(secret, body, "garbage", now=t) and not verify(secret, body, "", now=t)
    rotated = f"t={t},v1={'0' * 64},v1={header.split('v1=')[1]}"  # several v1: one must match
    assert verify(secret, body, rotated, now=t)


def test_the_readme_documents_the_exported_verify():
    """Receivers copy `verify` from the README: it must be the one the tests exercise, line for line."""
    import inspect

    from workers import callbacks

    readme = (ROOT / "README.md").read_text()
    assert "Dispatcher-Signature: t=<unix time>,v1=" in readme
    documented = readme.split("  def verify(", 1)[1].split("  ```", 1)[0].splitlines()[2:]
    exported = inspect.getsource(callbacks.verify).splitlines()[4:]
    assert [line.strip() for line in documented if line.strip()] == [line.strip() for line in exported if line.strip()]
