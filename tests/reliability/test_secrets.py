"""Never leaks a secret: API token on every route, nothing in plain text in Redis, logs or answers.

The full run: accounts of all four providers (password, cookie, pasted token),
generations on real workers, forced token refreshes (re-login, refresh token),
every read endpoint called. Then every Redis key (RQ's compressed job payloads
decompressed), every log line (in-process and the workers') and every answer is
searched for each credential, each session token and refresh token the upstream
issued, the API token and the vault key.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import textwrap
import zlib

import pytest

from dispatcher import logging as dlog
from dispatcher import providers

API_TOKEN = "test-api-token-0123456789"  # tests/conftest.py's settings
OPEN_ROUTES = {"/health"}
# The API documentation (the schema only, no data) is served without a token by design (dispatcher/api/app.py).
DOC_ROUTES = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}

CREDS = {
    "runwayml": {"email": "secret-run@example.com", "password": "Run-Pa55word-plain-0001", "maxJobs": 3},
    "pixverse": {"email": "secret-pix@example.com", "password": "Pix-Pa55word-plain-0002", "maxJobs": 3},
    "minimax": {"account": "900001", "token": "minimax-pasted-token-plain-0003", "maxJobs": 2},
    "riffusion": {"cookie": "sb-access-token=riffusion-cookie-plain-0004", "maxJobs": 3},
}
PROMPT = {"runwayml": "promptText", "pixverse": "prompt", "minimax": "prompt", "riffusion": "prompt"}


def _concrete(path: str) -> str:
    concrete = path.replace("{operation:path}", "gen/create")
    while "{" in concrete:
        start = concrete.index("{")
        concrete = concrete[:start] + "x" + concrete[concrete.index("}", start) + 1:]
    return concrete


def _routes(app) -> list[tuple[str, str]]:
    """(method, path with dummy parameters) of every route: the documented operations and the rest."""
    out = {(method.upper(), _concrete(path)) for path, ops in app.openapi()["paths"].items() for method in ops}
    for route in app.routes:  # top-level routes outside the document (/health, /docs, …)
        if getattr(route, "path", None):
            out |= {(m, _concrete(route.path)) for m in (route.methods or {"GET"}) if m != "HEAD"}
    return sorted(out)


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN[:-1]}", f"Bearer {API_TOKEN}x",
    f"Bearer {API_TOKEN.upper()}", f"Token {API_TOKEN}", API_TOKEN, f"Bearer  {API_TOKEN[1:]}",
])
def test_every_route_but_health_demands_the_token(api, header):
    app = api.app
    api.headers.pop("Authorization")
    headers = {} if header is None else {"Authorization": header}
    open_paths = set()
    for method, path in _routes(app):
        res = api.request(method, path, headers=headers)
        if res.status_code != 401:
            open_paths.add(path)
            continue
        assert res.json() == {"error": "Unauthorized", "code": 401}
    assert open_paths <= OPEN_ROUTES | DOC_ROUTES, open_paths
    assert "/health" in open_paths
    assert len(_routes(app)) > 40


def test_token_bytes_that_are_not_text_are_refused_not_crashed(api):
    api.headers.pop("Authorization")
    for value in (b"Bearer \xff\xfe\x00", b"Bearer " + "é".encode("latin-1") * 30, b"bearer " + b"\x80" * 5):
        res = api.get("/v1/runwayml/accounts", headers=[(b"authorization", value)])
        assert res.status_code == 401 and res.json()["code"] == 401


def test_token_comparison_is_constant_time_and_checks_every_token(settings):
    from dispatcher.secrets import token_matches

    tokens = ("first-token-aaaaaaaaaaaa", "second-token-bbbbbbbbbbb", "third-token-ccccccccccccc")
    assert all(token_matches(t, tokens) for t in tokens)
    for wrong in ("", "first-token-aaaaaaaaaaa", "first-token-aaaaaaaaaaaaa", "FIRST-TOKEN-AAAAAAAAAAAA",
                  "third-token-ccccccccccccd", "é" * 24, tokens[0] + tokens[1]):
        assert not token_matches(wrong, tokens)
    # Structure: compared with hmac.compare_digest against every token, no early exit, no ==.
    tree = ast.parse(textwrap.dedent(inspect.getsource(token_matches)))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "compare_digest"]
    assert calls, "tokens must be compared with hmac.compare_digest"
    loops = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))]
    assert loops and not any(isinstance(n, (ast.Return, ast.Break)) for loop in loops for n in ast.walk(loop)), \
        "the loop over tokens must not exit early (timing would tell which token matched)"
    assert not any(isinstance(op, (ast.Eq, ast.NotEq)) for n in ast.walk(tree) if isinstance(n, ast.Compare)
                   for op in n.ops), "no == on secrets"


def _haystack(client) -> bytes:
    """Every key and value in Redis, bytes, with RQ's zlib-compressed job payloads opened up."""
    parts = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        values = {b"string": lambda: [client.get(key)], b"hash": lambda: [b for kv in client.hgetall(key).items()
                                                                          for b in kv],
                  b"set": lambda: list(client.smembers(key)), b"list": lambda: client.lrange(key, 0, -1),
                  b"zset": lambda: [m for m, _ in client.zrange(key, 0, -1, withscores=True)]}.get(kind, list)()
        for value in values:
            parts.append(value)
            try:
                parts.append(zlib.decompress(value))
            except (zlib.error, TypeError):
                pass
    return b"\n".join(parts)


def test_full_run_leaves_no_secret_in_redis_logs_or_answers(dispatcher, sandbox, fleet, api, r, settings, rig):
    stream = io.StringIO()
    dlog.configure("json", "debug", stream=stream)
    try:
        _full_run(dispatcher, sandbox, fleet, api, rig)
        answers = _read_everything(api)
    finally:
        dlog.configure("json", "info")
    fleet.stop()

    secrets = {f"{p}.{k}": v for p, creds in CREDS.items() for k, v in creds.items()
               if k in ("password", "cookie", "token")}
    secrets["api token"] = API_TOKEN
    secrets["vault key"] = settings.secret_key
    for provider in CREDS:
        for account in dispatcher.core.accounts.all(providers.get(provider)):
            assert account.session is not None
            secrets[f"{provider} session token"] = account.session.token
            if account.session.refresh_token:
                secrets[f"{provider} refresh token"] = account.session.refresh_token
    assert dispatcher.core.r.hget(f"dsp:{{runwayml}}:acct:{CREDS['runwayml']['email']}", "refreshes"), \
        "the run was meant to include a forced token refresh"

    dump = _haystack(r)
    logs = stream.getvalue() + fleet.logs()
    assert "generation finished" in logs and "token refreshed" in logs  # the logs were written
    for name, value in secrets.items():
        assert value.encode() not in dump, f"{name} is stored in plain text in Redis"
        assert value not in logs, f"{name} reached the logs"
        assert value not in answers, f"{name} is in an API answer"
    # a JWT: header.payload.signature. GET shows tokens as `eyJ…secured…xyz`, which is fine, and a bare
    # "eyJ" turns up by chance inside Fernet ciphertexts (url-safe base64, no dots), so look for the dots
    jwt = r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\."
    assert not re.search(jwt.encode(), dump), "a JWT is stored in plain text"
    assert not re.search(jwt, answers) and not re.search(jwt, logs)


def _full_run(d, sandbox, fleet, api, rig) -> None:
    for provider, creds in CREDS.items():
        user = {"provider": provider, "concurrency": creds["maxJobs"], "duration": 0.5, "support_music": True,
                **{k: v for k, v in creds.items() if k != "maxJobs"}}
        sandbox.post("/_sandbox/users", json=user).raise_for_status()
        spec = providers.get(provider)
        path = f"{spec.api_prefix}/accounts" if spec.id_from_login else \
            f"{spec.api_prefix}/accounts/{creds[spec.id_field]}"
        res = api.post(path, json=creds)
        assert res.status_code == 200, res.text
    fleet.start(2)
    rig.wait_workers(2)
    ids = []
    for round_ in range(2):
        for provider in CREDS:
            for i in range(4):
                res = api.post(f"{providers.get(provider).api_prefix}/gen",
                               json={PROMPT[provider]: f"secret run {provider} {round_} {i}", "sandbox_duration": 0.3})
                assert res.status_code == 200, res.text
                ids.append(res.json()["id"])
        if round_ == 0:
            rig.provider = "runwayml"
            rig.wait_finished(ids, timeout=60)
            # the upstream revokes the sessions: the next calls get 401 and refresh (re-login / refresh token)
            for provider, ident in (("runwayml", CREDS["runwayml"]["email"]),
                                    ("pixverse", CREDS["pixverse"]["email"])):
                sandbox.post("/_sandbox/tokens/expire", json={"provider": provider, "id": ident}).raise_for_status()
    states = rig.wait_finished(ids, timeout=90)
    assert all(s in ("completed", "failed") for s in states.values()), states


def _read_everything(api) -> str:
    out = []
    for provider, creds in CREDS.items():
        spec = providers.get(provider)
        listed = api.get(f"{spec.api_prefix}/accounts")
        assert listed.status_code == 200
        out.append(listed.text)
        for account_id in listed.json():
            one = api.get(f"{spec.api_prefix}/accounts/{account_id}")
            assert one.status_code == 200 and "…secured…" in one.text
            out.append(one.text)
        out.append(api.get(f"{spec.api_prefix}/scheduler/available").text)
        out.append(api.get(f"{spec.api_prefix}/scheduler").text)
    metrics = api.get("/metrics")
    out.append(metrics.text)
    out.append(api.get("/openapi.json").text)
    return "\n".join(out)


def test_the_secret_registry_forgets_only_secrets_no_longer_used(monkeypatch):
    """Every refreshed token is registered. Past the bound, what goes is what has not been
    seen for SECRET_UNUSED_S; secrets in use stay masked however many accounts there are."""
    from cryptography.fernet import Fernet

    from dispatcher.secrets import Vault

    clock = [1000.0]
    monkeypatch.setattr(dlog, "_known_secrets", {})
    monkeypatch.setattr(dlog, "_clock", lambda: clock[0])
    monkeypatch.setattr(dlog, "MAX_KNOWN_SECRETS", 8)
    monkeypatch.setattr(dlog, "SECRET_UNUSED_S", 60.0)
    vault = Vault(Fernet.generate_key().decode())
    accounts = [vault.seal({"password": f"password-of-account-{i:03d}", "token": f"jwt-of-account-{i:03d}"})
                for i in range(20)]  # 40 live secrets: five times the bound
    live = {f"password-of-account-{i:03d}" for i in range(20)} | {f"jwt-of-account-{i:03d}" for i in range(20)}
    for tick in range(5):  # every 30 s: a burst of refreshes (tokens replaced), then every account is used
        for i in range(30):
            dlog.register_secret(f"replaced-token-{tick}-{i:03d}")
        if tick:  # right after the burst: every secret used 30 s ago is still known
            assert live <= set(dlog._known_secrets), "a secret in use was forgotten"
        for sealed in accounts:
            vault.open(sealed)  # cache hits after the first tick still re-register
        clock[0] += 30.0
    assert not any(k.startswith(("replaced-token-0-", "replaced-token-1-")) for k in dlog._known_secrets), \
        "tokens unused for more than SECRET_UNUSED_S are kept forever"
    assert len(dlog._known_secrets) < 40 + 5 * 30
    event = dlog.redact(None, "info", {"event": "login as password-of-account-000 with jwt-of-account-000"})
    assert event["event"] == f"login as {dlog.MASK} with {dlog.MASK}"
