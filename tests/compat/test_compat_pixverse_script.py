"""Replays useapi's published PixVerse client (`useapi/pixverse-api`, video/pixverse.mjs v1.0) request for
request: accounts → `files/?email=` upload → `videos/create` per prompt → poll `videos/{video_id}` until
`video_status_final` → download `url` without auth. Only the base URL and the sleeps change.

The account runs 2 jobs at once; 4 prompts are created before the workers start, so 2 wait (QUEUED).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from dispatcher.sandbox.media import GIF

EMAIL = "pix+team@example.com"
PROMPTS = [  # the script's prompts.json shape
    {"prompt": "a paper plane over hills", "aspect_ratio": "16:9", "duration": 5, "quality": "540p"},
    {"prompt": "the plane lands", "first_frame_path": "start.gif", "duration": 5},
    {"model": "v5", "prompt": "clouds drifting", "aspect_ratio": "9:16", "seed": 42},
    {"prompt": "sunset over the valley", "aspect_ratio": "1:1", "off_peak_mode": True},
]
SLEEP_POLL = 0.25  # the script sleeps 15 s


class PixVerseScript:
    def __init__(self, base: str, token: str, files: dict[str, bytes]):
        self.base, self.token, self.files = base, token, files
        self.uploaded: dict[str, str] = {}
        self.results: list[str] = []  # lines of pixverse_results.txt
        self.statuses: dict[str, list[str]] = {}
        self.codes: list[int] = []

    def headers(self, **extra) -> dict:
        return {"Accept": "application/json", "Authorization": f"Bearer {self.token}", **extra}

    def upload_file(self, email: str, filename: str) -> str | None:
        if filename in self.uploaded:
            return self.uploaded[filename]
        ext = filename.split(".")[-1].lower()
        content_type = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}.get(ext, "image/jpeg")
        res = httpx.post(f"{self.base}/v2/pixverse/files/?email={quote(email, safe='')}",
                         headers=self.headers(**{"Content-Type": content_type}), content=self.files[filename])
        self.codes.append(res.status_code)
        body = res.json() if res.is_success else {}
        self.uploaded[filename] = (body.get("result") or [{}])[0].get("path") or body.get("path")
        return self.uploaded[filename]

    def submit_video(self, email: str, prompt: dict, index: int) -> int:
        frame = self.upload_file(email, prompt["first_frame_path"]) if prompt.get("first_frame_path") else None
        body = {"model": prompt.get("model", "v6"), "email": email, "prompt": prompt.get("prompt"),
                "first_frame_path": frame, "duration": prompt.get("duration"), "quality": prompt.get("quality"),
                "aspect_ratio": None if frame else prompt.get("aspect_ratio"), "seed": prompt.get("seed"),
                "off_peak_mode": prompt.get("off_peak_mode")}
        body = {k: v for k, v in body.items() if v is not None}
        res = httpx.post(f"{self.base}/v2/pixverse/videos/create", json=body,
                         headers=self.headers(**{"Content-Type": "application/json"}))
        self.codes.append(res.status_code)
        if res.status_code == 200:
            video_id = res.json().get("video_id") or res.json().get("image_id")
            assert video_id, res.text
            self.results.append(f"{video_id},#{index}:{prompt.get('prompt')}")
            self.statuses[video_id] = [res.json()["video_status_name"]]
        return res.status_code

    def execute(self, email: str) -> None:
        res = httpx.get(f"{self.base}/v2/pixverse/accounts", headers=self.headers())
        self.codes.append(res.status_code)
        assert res.is_success and res.json().get(email)
        for i, prompt in enumerate(PROMPTS):
            code = self.submit_video(email, prompt, i + 1)
            assert code == 200, code

    def download(self, timeout: float = 90) -> dict[str, bytes]:
        saved = {}
        for line in self.results:
            video_id, _prompt = line.split(",")
            deadline = time.monotonic() + timeout
            while True:
                assert time.monotonic() < deadline, self.statuses[video_id]
                res = httpx.get(f"{self.base}/v2/pixverse/videos/{video_id}", headers=self.headers())
                self.codes.append(res.status_code)
                if res.status_code == 404:  # the script keeps waiting on 404
                    time.sleep(SLEEP_POLL)
                    continue
                assert res.is_success, res.text
                job = res.json()
                self.statuses[video_id].append(job["video_status_name"])
                assert not job.get("error"), job
                if not job["video_status_final"]:
                    time.sleep(SLEEP_POLL)
                    continue
                assert job["video_status_name"] == "COMPLETED" and job["url"], job
                video = httpx.get(job["url"])
                assert video.is_success
                saved[video_id.replace(":", "_").replace("*", "_") + ".mp4"] = video.content
                break
        return saved


def test_pixverse_script_flow(upstream, live_api, sandbox, fleet, settings, dispatcher):
    upstream.pixverse(EMAIL, 2, duration=0.6)
    upstream.pixverse("spare@example.com", 2, duration=0.6)
    script = PixVerseScript(str(live_api.base_url).rstrip("/"), settings.api_tokens[0], {"start.gif": GIF})

    script.execute(EMAIL)
    assert set(script.codes) == {200}
    assert [s[0] for s in script.statuses.values()] == ["QUEUED"] * 4  # created, none run yet
    waiting = [vid for vid in script.statuses if dispatcher.get(vid).state == "waiting"]
    assert len(waiting) == 2  # more prompts than the account's slots
    frame_job = dispatcher.get(script.results[1].split(",")[0])
    assert frame_job.payload["first_frame_path"] == script.uploaded["start.gif"]  # the upstream's own path

    fleet.start(2)
    saved = script.download()
    assert len(saved) == len(PROMPTS) and all(v.startswith(b"GIF89a") for v in saved.values())
    assert all("GENERATING" in s or "QUEUED" in s for s in script.statuses.values())
    assert set(script.codes) == {200}

    stats = sandbox.get("/_sandbox/stats", params={"provider": "pixverse"}).json()
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    assert stats["users"][EMAIL]["submitted"] == len(PROMPTS) and stats["users"][EMAIL]["max_concurrent"] <= 2
    assert stats["users"]["spare@example.com"]["submitted"] == 0
