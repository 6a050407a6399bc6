"""The pure renderers of `dispatcher.shapes` and the useapi-style id alias (no Redis, no HTTP)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher import shapes
from dispatcher import providers
from dispatcher.accounts import _error_code
from dispatcher.providers.runwayml.shape import asset_id, parse_asset_id, resolve_assets
from dispatcher.generations import (ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation,
                                    decode_account, internal_id, new_id, provider_of, public_id)

URL = "http://127.0.0.1:9/_sandbox/media/x.gif"


def gen(provider="runwayml", state=WAITING, **kw) -> Generation:
    values = dict(id=new_id(provider), provider=provider, operation="videos/create", payload={}, state=state,
                  created=1_700_000_000.25, reply_ref="ref-1", extra={"shape": provider})
    values.update(kw)
    return Generation(**values)


@pytest.mark.parametrize("state,progress,expected", [
    (WAITING, 0.0, "THROTTLED"), (ADMITTED, 0.0, "PENDING"), (SUBMITTED, 0.0, "PENDING"),
    (SUBMITTED, 0.4, "RUNNING"), (COMPLETED, 1.0, "SUCCEEDED"), (FAILED, 0.2, "FAILED"), (CANCELED, 0.1, "CANCELLED"),
])
def test_runway_task_status(state, progress, expected):
    g = gen(state=state, progress=progress, account="a@x.com" if state != WAITING else None,
            result={"artifacts": [URL]} if state == COMPLETED else None,
            error="Prompt rejected by moderation" if state == FAILED else None,
            error_code=422 if state == FAILED else None)
    task = shapes.render(g)
    assert task["status"] == expected and task["replyRef"] == "ref-1"
    assert task["taskId"] == shapes.job_id(g) and internal_id(task["taskId"]) == g.id
    assert task["createdAt"] == "2023-11-14T22:13:20.250Z"
    assert task["estimatedTimeToStartSeconds"] == (None if state == WAITING else 0)
    assert task["artifacts"] == ([{"url": URL}] if state == COMPLETED else [])
    assert (task["error"], task.get("code")) == {FAILED: ("Prompt rejected by moderation", 422),
                                                  CANCELED: ("canceled", None)}.get(state, (None, None))


@pytest.mark.parametrize("state,code,number,name,final", [
    (WAITING, None, 5, "QUEUED", False), (ADMITTED, None, 5, "QUEUED", False),
    (SUBMITTED, None, 5, "GENERATING", False), (COMPLETED, None, 1, "COMPLETED", True),
    (FAILED, 422, 7, "MODERATED", True), (FAILED, 500, 8, "FAILED", True), (CANCELED, None, 9, "CANCELED", True),
])
def test_pixverse_video_status(state, code, number, name, final):
    g = gen("pixverse", state, error_code=code, error="x" if code else None,
            result={"artifacts": [URL]} if state == COMPLETED else None)
    video = shapes.render(g)
    assert (video["video_status"], video["video_status_name"], video["video_status_final"]) == (number, name, final)
    assert video["url"] == (URL if state == COMPLETED else None)
    assert bool(video["error"]) == (state in (FAILED, CANCELED))  # the script's `if (error)` check


@pytest.mark.parametrize("state,code,number,label", [
    (WAITING, None, 1, "Queued"), (SUBMITTED, None, 1, "Processing"), (COMPLETED, None, 2, "Completed"),
    (FAILED, 422, 5, "Moderated"), (FAILED, 412, 5, "Failed"), (CANCELED, None, 7, "Canceled"),
])
def test_minimax_video_status(state, code, number, label):
    g = gen("minimax", state, progress=0.5, error_code=code, error="x" if code else None,
            result={"artifacts": [URL]} if state == COMPLETED else None)
    video = shapes.render(g)
    assert (video["status"], video["statusLabel"], video["statusFinal"]) == (number, label, g.terminal)
    assert video["percent"] == (100 if state == COMPLETED else 50)
    assert video["videoURL"] == video["downloadURL"] == (URL if state == COMPLETED else None)
    if state == FAILED:
        assert video["code"] == code


def test_riffusion_music_and_generic_generations():
    done = gen("riffusion", COMPLETED, account="u-1", result={"artifacts": ["a.wav", "b.wav"]})
    song = shapes.render(done)
    assert song["status"] == "completed" and song["download_url"] == "a.wav"
    assert song["audio_urls"] == ["a.wav", "b.wav"]
    assert song["id"] == song["job_id"] and song["user_id"] == "u-1"
    plain = gen("riffusion", WAITING, extra={})  # made through the generic API: no shape of its own
    assert shapes.shape_of(plain) is None and shapes.render(plain, "riffusion")["status"] == "queued"


def test_account_error_codes_and_elapsed():
    # flags written before codes were stored are read as their text said; a stored code wins
    assert _error_code("Out of credits (412): Insufficient credits", None) == 412
    assert _error_code("Account on hold (596): on hold", "") == 596
    assert _error_code("Session refresh failed 2026-01-01T00:00:00.000Z, update the account", None) == 596
    assert _error_code("Out of credits (412): x", "596") == 596 and _error_code(None, "412") is None
    assert shapes.elapsed(0) == "00:00" and shapes.elapsed(237.9) == "03:57" and shapes.elapsed(3725) == "62:05"
    g = gen("minimax", SUBMITTED, account="42", pinned="42", reply_url="http://h/x")
    row = shapes.scheduler_row("minimax", "account", {"id": g.id, "account": "42", "started": 100.0}, g, now=337.0)
    assert row == {"videoId": shapes.job_id(g), "account": "42", "started": "1970-01-01T00:01:40.000Z",
                   "elapsed": "03:57", "replyUrl": "http://h/x", "replyRef": "ref-1", "priority": 5, "tenant": None}


@settings(max_examples=200, deadline=None)
@given(account=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
       provider=st.sampled_from(sorted(providers.REGISTRY)))
def test_public_ids_round_trip_and_hold_no_separators(account, provider):
    internal = new_id(provider)
    kind = providers.get(provider).shape.kind
    public = public_id(internal, kind, account)
    assert internal_id(public) == internal and provider_of(internal_id(public)) == provider
    assert not set(public) & set(",/%?# \\")
    assert public == public_id(internal, kind, account)  # stable
    if account:
        embedded = public.split(":", 2)[2].rsplit(f"-{kind}:", 1)[0]
        assert decode_account(embedded) == account


@settings(max_examples=100, deadline=None)
@given(account=st.text(min_size=1, max_size=40), upstream=st.text(min_size=1, max_size=40))
def test_asset_ids_round_trip(account, upstream):
    asset = asset_id(account, upstream)
    assert not set(asset) & set(",/%?# ")
    assert parse_asset_id(asset) == (account, upstream)
    assert parse_asset_id(asset.replace("dispatcher-runwayml:", "dispatcher-pixverse:", 1)) is None
    payload, owner = resolve_assets({"imageAssetId1": asset, "text_prompt": "see " + asset}, None)
    assert owner == account and payload == {"imageAssetId1": upstream, "text_prompt": "see " + asset}
