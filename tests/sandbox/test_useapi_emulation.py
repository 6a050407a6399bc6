"""useapi's published example clients replayed request for request against the sandbox's
api.useapi.net emulation (`/useapi`), over real HTTP on loopback: `useapi/runway-api`
video/runwayml.mjs (v3.1), `useapi/pixverse-api` video/pixverse.mjs (v1.0) and `useapi/minimax-api`
video/videos.mjs (v3.0). Only the base URL and the sleeps change (10–30 s → a fraction).

The scripts themselves also ran unchanged with Node against a sandbox (their `fetch` redirected from
https://api.useapi.net to `<sandbox>/useapi` by a preload); these replays keep that check in the suite.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from dispatcher.sandbox.media import GIF

TOKEN = "user:1001-example-clients"
SLEEP = 0.4  # every sleep of the scripts (429 retry, poll interval), shortened
DURATION = 1.0  # seconds each generation runs on the sandbox: the next prompt finds the account busy


class Script:
    """What the three scripts share: the token header, a request log, downloads without auth."""

    def __init__(self, base: str) -> None:
        self.base = base  # stands for https://api.useapi.net
        self.log: list[tuple[str, int]] = []

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}", **extra}

    def call(self, name: str, method: str, url: str, **kw) -> httpx.Response:
        r = httpx.request(method, url, timeout=10, **kw)
        self.log.append((name, r.status_code))
        return r

    def fetch_accounts(self, path: str) -> dict:
        r = self.call("accounts", "GET", f"{self.base}{path}", headers=self.headers())
        assert r.is_success, f"⛔ Error fetching accounts (HTTP {r.status_code})"
        return r.json()

    def download(self, url: str) -> bytes:
        r = httpx.get(url, timeout=10)  # plain fetch(url): no Authorization
        assert r.is_success, url
        return r.content


@pytest.fixture
def setup(up, sandbox_url):
    """A registered useapi token; `account(path, body, **sandbox_user)` makes a user and its account."""
    assert up.http.post("/_sandbox/useapi-tokens", json={"token": TOKEN}).status_code == 201
    base = f"{sandbox_url}/useapi"

    def account(provider: str, path: str, body: dict, **user) -> None:
        ident = {k: v for k, v in body.items() if k != "maxJobs"}
        assert up.http.post("/_sandbox/users", json={"provider": provider, **ident, **user}).status_code == 201
        r = httpx.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code in (200, 201), r.text

    return base, account, up


# ---------------------------------------------------------------------------------------- Runway
RUNWAY_PROMPTS = [  # the repository's video/prompts.json
    {"text_prompt": "By default the Gen-4.5 model with a 5-second duration will be used."},
    {"model": "kling-3.0-pro", "duration": 10, "aspect_ratio": "16:9", "firstImage": "./first_image.jpeg",
     "lastImage": "./last_image.jpeg", "text_prompt": "First-and-last-frame video with Kling 3.0 Pro"},
    {"model": "gen4-turbo", "duration": 5, "firstImage": "./image.jpeg", "text_prompt": "Faster Gen-4 Turbo"},
]


class RunwayScript(Script):
    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.uploaded: dict[str, str] = {}
        self.results: list[str] = []

    def upload_asset(self, email: str, filename: str) -> str | None:
        if filename not in self.uploaded:
            name, ext = filename.rsplit("/", 1)[-1], filename.split(".")[-1]
            r = self.call("assets", "POST", f"{self.base}/v1/runwayml/assets/?email={email}&name={name}",
                          headers=self.headers(**{"Content-Type": f"image/{ext}"}), content=GIF)
            self.uploaded[filename] = r.json()["assetId"] if r.is_success else None
        return self.uploaded[filename]

    def submit_video(self, email: str, prompt: dict, index: int) -> int:
        start = prompt.get("firstImage") or prompt.get("image")
        body = {"model": prompt.get("model", "gen4.5"), "email": email, "text_prompt": prompt.get("text_prompt"),
                "aspect_ratio": prompt.get("aspect_ratio"), "duration": prompt.get("duration", 5),
                "seed": prompt.get("seed"), "exploreMode": prompt.get("exploreMode"),
                "imageAssetId1": self.upload_asset(email, start) if start else None,
                "imageAssetId2": self.upload_asset(email, prompt["lastImage"]) if prompt.get("lastImage") else None}
        r = self.call("videos/create", "POST", f"{self.base}/v1/runwayml/videos/create",
                      json={k: v for k, v in body.items() if v is not None},  # JSON.stringify drops undefined
                      headers=self.headers(**{"Content-Type": "application/json"}))
        if r.status_code == 200:
            self.results.append(f"{r.json()['taskId']},#{index}:{prompt.get('text_prompt')}")
        return r.status_code

    def execute(self, email: str) -> None:
        accounts = self.fetch_accounts("/v1/runwayml/accounts")
        assert accounts[email] and not accounts[email].get("error")
        for i, prompt in enumerate(RUNWAY_PROMPTS):
            while (code := self.submit_video(email, prompt, i + 1)) == 429:
                time.sleep(SLEEP)
            assert code == 200, code

    def fetch_results(self) -> list[bytes]:
        saved = []
        for line in self.results:
            task_id = line.split(",")[0]
            while True:
                r = self.call("tasks", "GET", f"{self.base}/v1/runwayml/tasks/{task_id}", headers=self.headers())
                assert r.is_success, r.text
                task = r.json()
                assert task["status"] != "FAILED", task["error"]
                if task["status"] == "SUCCEEDED":
                    saved.append(self.download(task["artifacts"][0]["url"]))
                    break
                assert {"progressRatio", "estimatedTimeToStartSeconds"} <= task.keys()
                time.sleep(SLEEP)
        return saved


def test_runway_script(setup):
    base, account, up = setup
    account("runwayml", "/v1/runwayml/accounts/jane@example.com",
            {"email": "jane@example.com", "password": "pw", "maxJobs": 1}, duration=DURATION)
    script = RunwayScript(base)
    script.execute("jane@example.com")
    creates = [code for name, code in script.log if name == "videos/create"]
    assert script.log[:5] == [("accounts", 200), ("videos/create", 200), ("assets", 200), ("assets", 200),
                              ("videos/create", 429)]  # maxJobs 1: prompt #2 finds #1 running
    assert creates.count(200) == 3 and set(creates) == {200, 429}
    assert [name for name, _ in script.log].count("assets") == 3  # each image once (the script's cache)
    assert all(line.startswith("user:1001-runwayml:jane@example.com-task:") for line in script.results)
    saved = script.fetch_results()
    assert len(saved) == 3 and all(data.startswith(b"GIF89a") for data in saved)
    stats = up.stats()  # the script retries blindly: each of its 429s is a violation of maxJobs
    assert stats["useapi"]["rejected_429"] == creates.count(429) == stats["useapi"]["violations"]
    assert stats["violations"] == 0 and stats["users"]["jane@example.com"]["submitted"] == 3


# --------------------------------------------------------------------------------------- PixVerse
PIXVERSE_PROMPTS = [  # the repository's video/prompts.json (#1 given the aspect_ratio its own check asks for)
    {"prompt": "By default the v6 model with a 5-second 720p 16:9 clip will be used.", "aspect_ratio": "16:9"},
    {"model": "v6", "duration": 15, "quality": "1080p", "aspect_ratio": "16:9", "audio": True,
     "multi_shot": True, "prompt": "PixVerse V6 with integrated audio and multi-shot storytelling."},
    {"model": "v5.6", "duration": 8, "quality": "1080p", "first_frame_path": "./first_frame.webp", "audio": True,
     "prompt": "Image-to-video: the local image is uploaded via POST files."},
    {"model": "seedance-2.0", "duration": 5, "quality": "720p", "aspect_ratio": "16:9", "off_peak_mode": False,
     "prompt": "Third-party models are selectable via the model field."},
]
CONTENT_TYPE = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}


class PixVerseScript(Script):
    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.uploaded: dict[str, str] = {}
        self.results: list[str] = []

    def upload_file(self, email: str, filename: str) -> str | None:
        if filename not in self.uploaded:
            ext = filename.split(".")[-1].lower()
            r = self.call("files", "POST", f"{self.base}/v2/pixverse/files/?email={quote(email, safe='')}",
                          headers=self.headers(**{"Content-Type": CONTENT_TYPE.get(ext, "image/jpeg")}),
                          content=GIF)
            self.uploaded[filename] = r.json()["result"][0]["path"] if r.is_success else None
        return self.uploaded[filename]

    def submit_video(self, email: str, prompt: dict, index: int) -> int:
        frame = self.upload_file(email, prompt["first_frame_path"]) if prompt.get("first_frame_path") else None
        body = {"model": prompt.get("model", "v6"), "email": email, "prompt": prompt.get("prompt"),
                "first_frame_path": frame, "aspect_ratio": None if frame else prompt.get("aspect_ratio"),
                **{k: prompt.get(k) for k in ("duration", "quality", "audio", "multi_shot", "preview_mode",
                                              "off_peak_mode", "seed", "template_id")}}
        r = self.call("videos/create", "POST", f"{self.base}/v2/pixverse/videos/create",
                      json={k: v for k, v in body.items() if v is not None},
                      headers=self.headers(**{"Content-Type": "application/json"}))
        if r.status_code == 200:
            video_id = r.json().get("video_id") or r.json().get("image_id")
            self.results.append(f"{video_id},#{index}:{prompt.get('prompt')}")
        return r.status_code

    def execute(self, email: str) -> None:
        assert email in self.fetch_accounts("/v2/pixverse/accounts")
        for i, prompt in enumerate(PIXVERSE_PROMPTS):
            while (code := self.submit_video(email, prompt, i + 1)) == 429:
                time.sleep(SLEEP)
            assert code == 200, code

    def fetch_results(self) -> list[bytes]:
        saved = []
        for line in self.results:
            video_id = line.split(",")[0]
            while True:
                r = self.call("videos", "GET", f"{self.base}/v2/pixverse/videos/{video_id}", headers=self.headers())
                if r.status_code == 404:  # the script reads 404 as "still processing"
                    time.sleep(SLEEP)
                    continue
                assert r.is_success, r.text
                job = r.json()
                assert not job.get("error"), job
                if not job["video_status_final"]:
                    time.sleep(SLEEP)
                    continue
                assert job["video_status_name"] == "COMPLETED" and job["url"]
                saved.append(self.download(job["url"]))
                break
        return saved


def test_pixverse_script(setup):
    base, account, up = setup
    account("pixverse", "/v2/pixverse/accounts/pix@example.com",
            {"email": "pix@example.com", "password": "pw", "maxJobs": 2}, duration=DURATION)
    script = PixVerseScript(base)
    script.execute("pix@example.com")
    creates = [code for name, code in script.log if name == "videos/create"]
    assert script.log[:5] == [("accounts", 200), ("videos/create", 200), ("videos/create", 200), ("files", 200),
                              ("videos/create", 429)]  # maxJobs 2: prompt #3 finds both running
    assert creates.count(200) == 4 and set(creates) == {200, 429}
    assert script.uploaded["./first_frame.webp"].startswith("upload/")
    assert len(script.fetch_results()) == 4
    stats = up.stats()
    assert stats["useapi"]["violations"] == creates.count(429) and stats["violations"] == 0


# ---------------------------------------------------------------------------------------- MiniMax
MINIMAX_PROMPTS = [  # the repository's video/videos.json
    {"file": "./blonde.jpeg", "prompt": "A beautiful blonde woman posing confidently for a magazine cover."},
    {"prompt": "From below shot of a cat catholic priest performing an exorcism on a demonic cat."},
    {"model": "02", "options": "1080p-6sec", "prompt": "Zoom in on a cute red shiny robot holding a banner."},
    {"model": "Seedance-2.0", "resolution": "1080", "duration": 8, "aspectRatio": "16:9",
     "prompt": "Cinematic tracking shot through a neon-lit alley at night."},
]


class MiniMaxScript(Script):
    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.uploaded: dict[str, dict[str, str]] = {}
        self.results: list[str] = []
        self.out_of_credits: list[str] = []

    def upload_file(self, account: str, filename: str) -> str | None:
        cache = self.uploaded.setdefault(account, {})
        if filename not in cache:
            r = self.call("files", "POST", f"{self.base}/v1/minimax/files/?account={account}",
                          headers=self.headers(**{"Content-Type": f"image/{filename.split('.')[-1]}"}), content=GIF)
            cache[filename] = r.json()["fileID"] if r.is_success else None
        return cache[filename]

    def submit_prompt(self, filename: str | None, fields: dict) -> int:
        r = self.call("scheduler/available", "GET", f"{self.base}/v1/minimax/scheduler/available",
                      headers=self.headers())
        available = [a for a in r.json()["available"] if a["account"] not in self.out_of_credits]
        if not available:
            return 429  # "Waiting for currently running generations to complete …"
        account = available[0]["account"]
        file_id = self.upload_file(account, filename) if filename else None
        body = {k: v for k, v in {"account": account, "fileID": file_id, **fields}.items() if v is not None}
        r = self.call("videos/create", "POST", f"{self.base}/v1/minimax/videos/create", json=body,
                      headers=self.headers(**{"Content-Type": "application/json"}))
        if r.status_code == 200:
            self.results.append(f"{r.json()['videoId']},{fields.get('prompt')}")
        if r.status_code == 412:
            self.out_of_credits.append(account)
        return 429 if r.status_code in (502, 504) else r.status_code

    def execute(self) -> int:
        accounts = self.fetch_accounts("/v1/minimax/accounts")
        active = [a for a in accounts.values() if a["supportVideo"] and not a.get("error")]
        for prompt in MINIMAX_PROMPTS:
            fields = {k: v for k, v in prompt.items() if k != "file"}
            while (code := self.submit_prompt(prompt.get("file"), fields)) == 429:
                time.sleep(SLEEP)
            assert code == 200, code
        return len(active)

    def fetch_results(self) -> list[bytes]:
        saved = []
        for line in self.results:
            video_id = line.split(",")[0]
            while True:
                r = self.call("videos", "GET", f"{self.base}/v1/minimax/videos/{video_id}", headers=self.headers())
                assert r.is_success, r.text
                video = r.json()
                if video["statusFinal"]:
                    saved.append(self.download(video["downloadURL"] or video["videoURL"]))
                    break
                time.sleep(SLEEP)
        return saved


def test_minimax_script(setup):
    base, account, up = setup
    for n in (1, 2, 3):
        account("minimax", f"/v1/minimax/accounts/mm-{n}",
                {"account": f"mm-{n}", "token": f"pasted-token-{n}", "maxJobs": 1}, duration=DURATION)
    up.http.post("/_sandbox/useapi-accounts/error", json={"provider": "minimax", "account": "mm-3",
                                                           "error": "placed on hold"})
    script = MiniMaxScript(base)
    assert script.execute() == 2  # the account with a pending error is left out
    names = [name for name, _ in script.log]
    assert names[:5] == ["accounts", "scheduler/available", "files", "videos/create", "scheduler/available"]
    assert names.count("videos/create") == 4 and names.count("files") == 1
    assert all(code == 200 for _, code in script.log)  # it asks for capacity first: never a 429
    assert {line.split("-video:")[0] for line in script.results} == {"user:1001-minimax:mm-1",
                                                                     "user:1001-minimax:mm-2"}
    assert len(script.fetch_results()) == 4
    stats = up.stats()
    assert stats["useapi"]["violations"] == 0 == stats["useapi"]["rejected_429"] == stats["violations"]
    assert stats["users"]["mm-3"]["submitted"] == 0
