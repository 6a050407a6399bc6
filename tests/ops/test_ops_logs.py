"""Logs of a full run with known passwords, cookies and tokens contain none of them."""

from __future__ import annotations

import io
import json
import subprocess
import sys


from dispatcher import logging as dlog
from dispatcher.logging import parse_json_lines
from dispatcher import providers
from dispatcher.generations import LIVE


def test_a_full_run_logs_no_known_secret(api, dispatcher, sandbox, fleet, settings, wait, capfd, monkeypatch,
                                         known, op):
    KNOWN, SECRET_FIELDS = known["accounts"], known["secret_fields"]
    monkeypatch.setenv("DISPATCHER_LOG_LEVEL", "debug")  # the workers log everything they can
    stream = io.StringIO()
    dlog.configure("json", "debug", stream=stream)
    try:
        # upstream users with faults that drive the refresh, cooldown and retry paths
        faults = {"runwayml": {"429": 0.15, "5xx": 0.15}, "pixverse": {"401": 0.3}, "minimax": {},
                  "riffusion": {"5xx": 0.2}}
        for provider, creds in KNOWN.items():
            res = sandbox.post("/_sandbox/users", json={"provider": provider, "concurrency": 2, **creds,
                                                        "faults": faults[provider], "retry_after": 0.2})
            assert res.status_code == 201, res.text
        bad = api.post("/v1/runwayml/accounts/ops-runway@example.com",
                       json={"email": "ops-runway@example.com", "password": "Wrong-pass-Ww00-not-for-logs",
                             "maxJobs": 2})
        assert bad.status_code == 401
        ids = {}
        for provider, creds in KNOWN.items():
            spec = providers.get(provider)
            path = f"{spec.api_prefix}/accounts" + ("" if spec.id_from_login else f"/{creds[spec.id_field]}")
            res = api.post(path, json={**creds, "maxJobs": 2})
            assert res.status_code in (200, 201), res.text
            ids[provider] = res.json()[spec.id_field]

        fleet.start(1)
        gens = []
        for provider in KNOWN:
            for i, prompt in enumerate(("a quiet lake", "a [fail] attempt", "city at night", "[moderated] x")):
                payload = {"prompt": prompt, "promptText": prompt, "sandbox_duration": 2.5 if i % 2 else 1.0}
                gens.append(dispatcher.submit(provider, op(provider), payload).id)

        def riffusion_accepted():
            return any(g.upstream_id for g in dispatcher.core.generations.many(gens) if g.provider == "riffusion")

        wait(riffusion_accepted, 60, what="a riffusion generation accepted upstream")
        sandbox.post("/_sandbox/tokens/expire", json={"provider": "riffusion", "id": ids["riffusion"]})
        victim = next(g for g in dispatcher.core.generations.many(gens) if g.state in LIVE)
        dispatcher.cancel(victim.id)
        wait(lambda: all(g.state not in LIVE for g in dispatcher.core.generations.many(gens)), 180,
             what="every generation to finish")

        views = "".join(api.get(f"{providers.get(p).api_prefix}/accounts").text for p in KNOWN)
        views += api.get("/metrics").text + api.get("/v1/runwayml/scheduler/available").text
    finally:
        dlog.configure("json", "info")
    captured = capfd.readouterr()
    worker_logs = fleet.logs()
    text = "\n".join([stream.getvalue(), captured.out, captured.err, worker_logs, views])

    secrets = [creds[SECRET_FIELDS[p]] for p, creds in KNOWN.items()]
    secrets += ["Wrong-pass-Ww00-not-for-logs", settings.secret_key, *settings.api_tokens]
    for provider, account_id in ids.items():
        session = dispatcher.core.accounts.get(providers.get(provider), account_id).session
        secrets += [s for s in (session.token, session.refresh_token) if s]
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:4]}…) reached a log line or a response"

    # the run really exercised what it claims: JSON lines, bound context, refreshes, failures
    events = parse_json_lines(worker_logs)
    finished = [e for e in events if e.get("event") == "generation finished"]
    assert len(finished) >= 8, worker_logs[-3000:]
    assert all({"generation_id", "provider", "account"} <= set(e) for e in finished)
    assert {e["provider"] for e in finished} == set(KNOWN)
    assert any(e.get("event") == "token refreshed" for e in events), "no refresh happened in the run"
    states = [g.state for g in dispatcher.core.generations.many(gens)]
    assert "completed" in states and "failed" in states and "canceled" in states


def test_account_ids_stay_readable_in_logs(settings):
    from dispatcher.secrets import Vault

    vault = Vault.from_settings(settings)
    vault.seal({"email": "readable-id@example.com", "password": "Not-readable-Pw-1234"})
    stream = io.StringIO()
    dlog.configure("json", "info", stream=stream)
    try:
        dlog.get_logger().info("probe", account="readable-id@example.com", note="Not-readable-Pw-1234")
    finally:
        dlog.configure("json", "info")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["note"] == "…secured…"
    assert line["account"] == "readable-id@example.com"


def test_loggers_imported_before_configure_still_redact():
    code = ("import dispatcher.client as c\n"
            "from dispatcher import logging as dl\n"
            "dl.configure('json', 'info')\n"
            "dl.register_secret('Probe-secret-Pp77')\n"
            "c.log.info('probe', note='Probe-secret-Pp77')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Probe-secret-Pp77" not in done.stdout + done.stderr
    (line,) = [e for e in parse_json_lines(done.stderr) if e.get("event") == "probe"]
    assert line["note"] == "…secured…"
