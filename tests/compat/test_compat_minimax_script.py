"""Replays useapi's published MiniMax client (`useapi/minimax-api`, video/videos.mjs v3.0) request for
request: accounts filtered on `supportVideo` and no `error` → per prompt `scheduler/available` →
`files/?account=` upload → `videos/create` pinned to `available[0].account` → poll `videos/{videoId}`
until `statusFinal` → download `downloadURL ?? videoURL` without auth. Only the base URL and sleeps change.

Two video accounts with one slot each and four prompts: the script itself waits (its 429 path) when
`available` is empty. The workers start the first time it has to wait, so that wait is certain.
"""

from __future__ import annotations

import time

import httpx

from dispatcher.sandbox.media import GIF

PROMPTS = [  # the script's videos.json shape
    {"prompt": "a koi pond in the rain", "file": "koi.png"},
    {"prompt": "a drone shot over dunes", "model": "hailuo-02", "duration": 6},
    {"prompt": "fireflies at night", "file": "koi.png"},
    {"prompt": "a train through mountains", "resolution": "768P"},
]
SLEEP_429 = 0.3  # the script sleeps 20 s
SLEEP_DOWNLOAD = 0.25  # the script sleeps 30 s


class MiniMaxScript:
    def __init__(self, base: str, token: str, files: dict[str, bytes], on_wait):
        self.base, self.token, self.files, self.on_wait = base, token, files, on_wait
        self.uploaded: dict[str, dict[str, str]] = {}
        self.out_of_credits: list[str] = []
        self.results: list[str] = []  # lines of videos_results.txt
        self.waits = 0
        self.executing_seen: list[list[dict]] = []
        self.accounts_used: list[str] = []

    def headers(self, **extra) -> dict:
        return {"Accept": "application/json", "Authorization": f"Bearer {self.token}", **extra}

    def upload_file(self, account: str, filename: str) -> str | None:
        per_account = self.uploaded.setdefault(account, {})
        if filename in per_account:
            return per_account[filename]
        ext = filename.split(".")[-1]
        res = httpx.post(f"{self.base}/v1/minimax/files/?account={account}",
                         headers=self.headers(**{"Content-Type": f"image/{ext}"}), content=self.files[filename])
        per_account[filename] = res.json()["fileID"] if res.is_success else None
        return per_account[filename]

    def submit_prompt(self, filename: str | None, fields: dict) -> int:
        available_json = httpx.get(f"{self.base}/v1/minimax/scheduler/available", headers=self.headers()).json()
        self.executing_seen.append(available_json["executing"])
        available = [a for a in available_json["available"] if a["account"] not in self.out_of_credits]
        if not available:
            return 429
        account = available[0]["account"]
        file_id = self.upload_file(account, filename) if filename else None
        body = {k: v for k, v in {"account": account, "fileID": file_id, **fields}.items() if v is not None}
        res = httpx.post(f"{self.base}/v1/minimax/videos/create", json=body,
                         headers=self.headers(**{"Content-Type": "application/json"}))
        if res.status_code == 200:
            video_id = res.json().get("videoId")
            assert video_id, res.text
            self.results.append(f"{video_id},{fields.get('prompt')}")
            self.accounts_used.append(account)
            return 200
        if res.status_code in (502, 504, 429):
            return 429
        if res.status_code == 412:
            self.out_of_credits.append(account)
        return res.status_code

    def execute(self) -> int:
        accounts = httpx.get(f"{self.base}/v1/minimax/accounts", headers=self.headers()).json()
        video_accounts = [a for a in accounts.values() if a.get("supportVideo") and not a.get("error")]
        assert video_accounts, "No configured active video accounts found"
        for prompt in PROMPTS:
            fields = {k: v for k, v in prompt.items() if k != "file"}
            while True:
                code = self.submit_prompt(prompt.get("file"), fields)
                if code == 429:
                    self.waits += 1
                    self.on_wait()
                    time.sleep(SLEEP_429)
                    continue
                assert code not in (412, 596), code
                break
        return len(video_accounts)

    def download(self, timeout: float = 90) -> dict[str, bytes]:
        saved = {}
        for line in self.results:
            video_id, _prompt = line.split(",")
            deadline = time.monotonic() + timeout
            while True:
                res = httpx.get(f"{self.base}/v1/minimax/videos/{video_id}", headers=self.headers())
                assert res.is_success, res.text
                video = res.json()
                if video["statusFinal"]:
                    url = video.get("downloadURL") or video.get("videoURL")
                    assert url and video["status"] == 2 and video["statusLabel"] == "Completed", video
                    media = httpx.get(url)
                    assert media.is_success
                    saved[video_id.replace(":", "_") + ".mp4"] = media.content
                    break
                assert time.monotonic() < deadline, video
                time.sleep(SLEEP_DOWNLOAD)
        return saved


def test_minimax_script_flow(upstream, live_api, sandbox, fleet, settings, dispatcher):
    upstream.minimax("100001", 1, duration=0.6)
    upstream.minimax("100002", 1, duration=0.6)
    upstream.minimax("100003", 2, duration=0.6)
    dispatcher.core.flag_account("minimax", "100003", "Session refresh failed 2026-01-19T14:31:15.000Z, update the account")

    def start_workers():
        if not fleet.procs:
            fleet.start(2)

    script = MiniMaxScript(str(live_api.base_url).rstrip("/"), settings.api_tokens[0], {"koi.png": GIF},
                           start_workers)
    assert script.execute() == 2  # the flagged account is filtered out, as the script does
    assert script.waits >= 1  # 4 prompts, 2 slots: the script had to wait for running generations
    assert sorted(script.accounts_used[:2]) == ["100001", "100002"]  # available[0] each time
    assert "100003" not in script.accounts_used
    running = [row for rows in script.executing_seen for row in rows]
    assert running and all(row["videoId"].startswith("user:dispatcher-minimax:") for row in running)
    assert all(set(row) >= {"videoId", "account", "started", "elapsed", "replyUrl", "replyRef"} for row in running)
    assert {row["videoId"] for row in running} <= {line.split(",")[0] for line in script.results}

    saved = script.download()
    assert len(saved) == len(PROMPTS) and all(v.startswith(b"GIF89a") for v in saved.values())
    for line in script.results:  # the ids embed the account each create was pinned to
        video_id = line.split(",")[0]
        assert dispatcher.get(video_id).account == video_id.split(":")[2].rsplit("-video", 1)[0]

    stats = sandbox.get("/_sandbox/stats", params={"provider": "minimax"}).json()
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    assert stats["users"]["100003"]["submitted"] == 0
    assert all(stats["users"][a]["max_concurrent"] <= 1 for a in ("100001", "100002"))
