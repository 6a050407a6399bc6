"""`/metrics` after real generations: it passes the official checks, and its `account` label is a
keyed digest by default (`DISPATCHER_METRICS_ACCOUNT_LABELS=hash`), the same for what the workers
counted and what the API reads live, shown beside each account by `dispatcher status`.

The check is promtool's (`promtool check metrics`, the Debian package `prometheus`) when it is on
PATH, and always the official Python parser (`prometheus_client.parser`); the test prints, and
records as the property `checked_with`, which ran."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.generations import LIVE
from dispatcher.metric_store import AccountLabels
from dispatcher.overview import collect
from dispatcher.ops.status import render_table

DIGEST = re.compile(r"acct-[0-9a-f]{10}")


def promtool_check(text: str) -> str:
    """`promtool check metrics` on the text (its lint included); the version that ran."""
    promtool = shutil.which("promtool")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    version = subprocess.run([promtool, "--version"], capture_output=True, text=True, timeout=60)
    return (version.stdout or version.stderr).splitlines()[0]


def parser_check(text: str) -> dict:
    """The official parser reads every line; each family is documented and typed. {family: [samples]}."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families
    for family in families.values():
        assert family.documentation, family.name
        assert family.type in ("counter", "gauge", "histogram"), (family.name, family.type)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    assert samples == sum(len(f.samples) for f in families.values()), "a line the parser did not read"
    return {name: family.samples for name, family in families.items()}


def official_check(text: str, record_property) -> dict:
    checked = ["prometheus_client.parser"]
    families = parser_check(text)
    if shutil.which("promtool"):
        checked.insert(0, promtool_check(text))
    else:
        checked.insert(0, "promtool: not on PATH (apt-get install prometheus), skipped")
    record_property("checked_with", "; ".join(checked))
    print("/metrics checked with:", "; ".join(checked))
    return families


def accounts_of(families: dict, name: str) -> set[str]:
    return {s.labels["account"] for s in families.get(name, ()) if "account" in s.labels}


def test_metrics_after_generations_pass_the_official_check(api, dispatcher, add_account, submit, fleet, wait,
                                                           record_property):
    runway = add_account("runwayml", 2)
    minimax = add_account("minimax", 1)
    ids = submit("runwayml", 3, 0.3) + submit("minimax", 2, 0.3)
    ids += submit("runwayml", 1, 0.3, promptText="[moderated] a test", prompt="[moderated] a test")
    dispatcher.core.cooldown_account("minimax", minimax, 0.5)  # a cooldown counter with an account label
    fleet.start(1)
    wait(lambda: all(g.state not in LIVE for g in dispatcher.core.generations.many(ids)), 120,
         what="the generations to end")

    def counted() -> bool:  # the worker sends its deferred counters with its next maintenance tick
        samples = parser_check(api.get("/metrics").text).get("dispatcher_generations", [])
        return sum(s.value for s in samples if s.name == "dispatcher_generations_total") == len(ids)

    wait(counted, 15, interval=0.1, what="the worker's counters to reach Redis")
    res = api.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    families = official_check(res.text, record_property)

    outcomes = {s.labels["reason"] for s in families["dispatcher_generations"] if s.name.endswith("_total")}
    assert {"ok", "moderated"} <= outcomes
    # no email anywhere in the answer: every account label is a digest
    assert "@example.com" not in res.text and runway not in res.text
    label = AccountLabels.of(dispatcher)
    everywhere = set().union(*(accounts_of(families, name) for name in families))
    assert everywhere == {label(runway), label(minimax)} and all(DIGEST.fullmatch(x) for x in everywhere)
    # counted by the worker process, exposed by the API: the same label as the live gauges
    assert accounts_of(families, "dispatcher_admissions") == accounts_of(families, "dispatcher_account_slots_max")
    assert accounts_of(families, "dispatcher_cooldowns") == {label(minimax)}


def test_the_account_label_is_a_keyed_stable_digest(settings):
    from cryptography.fernet import Fernet

    email = "someone@example.com"
    first = AccountLabels("hash", settings.secret_key)
    assert first(email) == AccountLabels("hash", settings.secret_key)(email)  # stable: every process agrees
    assert DIGEST.fullmatch(first(email)) and first(email) != first("someone-else@example.com")
    assert AccountLabels("hash", Fernet.generate_key().decode())(email) != first(email)  # keyed
    # nobody confirms a guessed email by hashing it without the key
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.blake2b):
        assert digest(email.encode()).hexdigest()[:10] not in first(email)
    assert AccountLabels("raw", settings.secret_key)(email) == email
    assert first("odd\ud800id").startswith("acct-")  # any stored id, even one that is not valid UTF-8
    with pytest.raises(ValueError):
        AccountLabels("alias", settings.secret_key)


def test_raw_labels_when_asked(dispatcher, settings, add_account):
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher

    account = add_account("runwayml", 2)
    dispatcher.core.cooldown_account("runwayml", account, 30)
    raw = Dispatcher(settings.redis_url, settings.with_(metrics_account_labels="raw"))
    try:
        with TestClient(create_app(raw)) as client:
            text = client.get("/metrics", headers={"Authorization": f"Bearer {settings.api_tokens[0]}"}).text
    finally:
        raw.close()
    families = parser_check(text)
    assert accounts_of(families, "dispatcher_cooldowns") == {account}
    assert accounts_of(families, "dispatcher_account_slots_max") == {account}


def test_status_shows_which_account_a_label_is(dispatcher, add_account):
    account = add_account("runwayml", 2)
    data = collect(dispatcher)
    (row,) = data["providers"]["runwayml"]["accounts"]
    assert data["account_labels"] == "hash" and row["metrics_label"] == AccountLabels.of(dispatcher)(account)
    out = io.StringIO()
    from rich.console import Console

    render_table(data, Console(file=out, width=250))
    line = next(line for line in out.getvalue().splitlines() if account in line)
    assert row["metrics_label"] in line and "metrics label" in out.getvalue()
