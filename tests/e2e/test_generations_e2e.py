"""Generations end to end: real worker processes, real Redis, the sandbox over loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ACCOUNTS = {"a@example.com": 2, "b@example.com": 3, "c@example.com": 5}


class CallbackReceiver:
    """A loopback HTTP server that records every callback it receives."""

    def __init__(self):
        self.received: list[tuple[dict, bytes, str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((json.loads(body), body, self.headers.get("X-Dispatcher-Signature", ""),
                                          self.headers.get("Dispatcher-Signature", "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    rec = CallbackReceiver()
    yield rec
    rec.close()


def register(dispatcher, sandbox, accounts=ACCOUNTS, *, duration=1.0):
    for email, max_jobs in accounts.items():
        sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": email, "password": "pw-" + email,
                                              "concurrency": max_jobs, "duration": duration}).raise_for_status()
        dispatcher.upsert_account("runwayml", {"email": email, "password": "pw-" + email, "maxJobs": max_jobs},
                                  email)


def wait_all(dispatcher, ids, timeout):
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        gens = dict(zip(list(pending), dispatcher.core.generations.many(list(pending))))
        pending = {gid for gid, g in gens.items() if g is None or not g.terminal}
        time.sleep(0.25)
    return pending


def test_200_generations_balance_without_violations(dispatcher, sandbox, fleet, receiver):
    register(dispatcher, sandbox)
    fleet.start(2)
    rng = random.Random(7)
    ids, pinned = [], {}
    for i in range(200):
        account = "a@example.com" if i % 20 == 0 else None
        handle = dispatcher.submit(
            "runwayml", "gen3turbo/create",
            {"promptText": f"prompt {i}", "sandbox_duration": round(rng.uniform(0.5, 2.0), 2)},
            account=account, reply_url=receiver.url, reply_ref=f"ref-{i}")
        ids.append(handle.id)
        if account:
            pinned[handle.id] = account

    assert not wait_all(dispatcher, ids, timeout=240), fleet.logs()[-3000:]
    gens = dispatcher.core.generations.many(ids)
    assert all(g.state == "completed" for g in gens), [(g.id, g.state, g.error) for g in gens if g.state != "completed"]
    per_account = {}
    for g in gens:
        per_account[g.account] = per_account.get(g.account, 0) + 1
        assert g.result["artifacts"] and g.result["artifacts"][0].startswith("http://127.0.0.1")
    assert set(per_account) == set(ACCOUNTS), per_account  # every account ran jobs
    assert all(gens[ids.index(gid)].account == acct for gid, acct in pinned.items())

    stats = sandbox.get("/_sandbox/stats").json()
    assert stats["violations"] == 0
    assert stats["duplicates"] == 0
    assert sum(u["submitted"] for u in stats["users"].values()) == 200
    for email, max_jobs in ACCOUNTS.items():
        assert stats["users"][email]["max_concurrent"] <= max_jobs

    # no slot leaked
    snap = dispatcher.available("runwayml")
    assert all(a["executing"] == 0 for a in snap["accounts"].values()) and snap["waiting"] == 0

    # one valid signed callback per generation: timestamped (Dispatcher-Signature), and the legacy header
    from workers.callbacks import verify

    deadline = time.monotonic() + 60
    while len(receiver.received) < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    by_id = {}
    for body, raw, legacy, signature in receiver.received:
        assert verify(dispatcher.core.callback_secret, raw, signature)
        expected = "sha256=" + hmac.new(dispatcher.core.callback_secret.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(legacy, expected)
        by_id.setdefault(body["id"], []).append(body)
    assert set(by_id) == set(ids)
    assert all(len(v) == 1 for v in by_id.values())
    assert all(v[0]["replyRef"] == f"ref-{ids.index(k)}" and v[0]["status"] == "completed" for k, v in by_id.items())


def test_cancel_mid_flight_frees_the_slot(dispatcher, sandbox, fleet):
    register(dispatcher, sandbox, {"solo@example.com": 1}, duration=30)
    fleet.start(1)
    running = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "long"})
    waiting = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "next", "sandbox_duration": 0.3})
    deadline = time.monotonic() + 30
    while running.status != "submitted" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running.status == "submitted"
    assert waiting.status == "waiting"

    canceled = running.cancel()
    assert canceled.state == "canceled"
    # the freed slot admits the waiter, which completes
    assert waiting.result(timeout=30).state == "completed"
    user = sandbox.get("/_sandbox/stats").json()["users"]["solo@example.com"]
    assert user["canceled"] == 1 and sandbox.get("/_sandbox/stats").json()["violations"] == 0
    assert dispatcher.available("runwayml")["accounts"]["solo@example.com"]["executing"] == 0


def test_cancel_waiting_job_leaves_the_line(dispatcher, sandbox):
    register(dispatcher, sandbox, {"busy@example.com": 1})
    first = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "one"})
    second = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "two"})
    assert second.status == "waiting" and dispatcher.available("runwayml")["waiting"] == 1
    assert second.cancel().state == "canceled"
    assert dispatcher.available("runwayml")["waiting"] == 0
    assert first.status == "admitted"  # nobody runs workers here: it stays admitted, holding its slot


def test_no_wait_submission_is_refused_with_429(api, dispatcher, sandbox):
    """The generic job endpoint (any operation not shaped by the useapi-compatible routes)."""
    register(dispatcher, sandbox, {"full@example.com": 1})
    ok = api.post("/v1/runwayml/text_to_video", json={"promptText": "x"})
    assert ok.status_code == 200 and ok.json()["status"] == "admitted"
    refused = api.post("/v1/runwayml/text_to_video", json={"promptText": "y", "wait": False})
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    assert "full@example.com 1/1" in refused.json()["error"]


def test_job_endpoints_read_and_cancel(api, dispatcher, sandbox):
    register(dispatcher, sandbox, {"one@example.com": 1})
    created = api.post("/v1/runwayml/text_to_video",
                       json={"promptText": "x", "email": "one@example.com", "replyRef": "r1"}).json()
    read = api.get(f"/v1/jobs/{created['id']}").json()
    assert read["provider"] == "runwayml" and read["operation"] == "text_to_video"
    assert read["account"] == "one@example.com" and read["replyRef"] == "r1"
    assert api.delete(f"/v1/jobs/{created['id']}").json()["status"] == "canceled"
    assert api.get("/v1/jobs/runwayml-" + "0" * 32).status_code == 404
    assert api.get("/v1/jobs/nonsense").status_code == 404


def test_refused_submission_still_starts_waiters_the_pump_admitted(dispatcher, sandbox):
    register(dispatcher, sandbox, {"cool@example.com": 1})
    dispatcher.core.cooldown_account("runwayml", "cool@example.com", 0.3)
    waiter = dispatcher.submit("runwayml", "text_to_video", {"promptText": "waits out the cooldown"})
    assert waiter.status == "waiting"
    time.sleep(0.5)  # the cooldown ends without any event: the next script's pump admits the waiter
    with pytest.raises(Exception) as refused:
        dispatcher.submit("runwayml", "text_to_video", {"promptText": "no wait"}, wait=False)
    assert type(refused.value).__name__ == "NoCapacity"
    assert waiter.status == "admitted" and waiter.generation.account == "cool@example.com"
