"""Replays useapi's published Runway client (`useapi/runway-api`, video/runwayml.mjs v3.0) request for
request against the dispatcher: only the base URL and the sleeps (20 s, 10 s → a fraction) change.

accounts map read → asset upload → `videos/create` for every prompt → poll `tasks/{taskId}` until
SUCCEEDED → download the artifact without auth. The account runs 2 jobs at once and 5 prompts are
sent before the workers start, so exactly 3 wait for capacity and read THROTTLED, then run as slots
free up.
"""

from __future__ import annotations

import time

import httpx

from dispatcher.sandbox.media import GIF

EMAIL = "jane@example.com"
PROMPTS = [  # the script's prompts.json shape
    {"text_prompt": "a lighthouse at dawn", "image": "frame.gif", "duration": 5},
    {"model": "gen4.5", "text_prompt": "waves in slow motion", "aspect_ratio": "16:9"},
    {"text_prompt": "a fox in the snow", "firstImage": "frame.gif", "lastImage": "frame.gif", "seed": 7},
    {"text_prompt": "city lights timelapse", "exploreMode": False},
    {"text_prompt": "paper boats on a river"},
]
SLEEP_429 = 0.5  # the script sleeps 10 s on 429
SLEEP_DOWNLOAD = 0.25  # the script sleeps 20 s between polls


class RunwayScript:
    """The script's requests, in its order, with its headers and bodies."""

    def __init__(self, base: str, token: str, files: dict[str, bytes]):
        self.base, self.token, self.files = base, token, files
        self.uploaded: dict[str, str] = {}
        self.results: list[str] = []  # lines of runwayml_results.txt
        self.log: list[tuple[str, int]] = []
        self.seen_status: dict[str, list[str]] = {}

    def headers(self, **extra) -> dict:
        return {"Accept": "application/json", "Authorization": f"Bearer {self.token}", **extra}

    def fetch_accounts(self) -> dict:
        res = httpx.get(f"{self.base}/v1/runwayml/accounts", headers=self.headers())
        self.log.append(("accounts", res.status_code))
        assert res.is_success
        return res.json()

    def upload_asset(self, email: str, filename: str) -> str | None:
        if filename in self.uploaded:
            return self.uploaded[filename]
        ext = filename.split(".")[-1]
        res = httpx.post(f"{self.base}/v1/runwayml/assets/?email={email}&name={filename}",
                         headers=self.headers(**{"Content-Type": f"image/{ext}"}), content=self.files[filename])
        self.log.append(("assets", res.status_code))
        self.uploaded[filename] = res.json()["assetId"] if res.is_success else None
        return self.uploaded[filename]

    def submit_video(self, email: str, prompt: dict, index: int) -> int:
        start_frame = prompt.get("firstImage") or prompt.get("image")
        body = {
            "model": prompt.get("model", "gen4.5"), "email": email, "text_prompt": prompt.get("text_prompt"),
            "aspect_ratio": prompt.get("aspect_ratio"), "duration": prompt.get("duration", 5),
            "seed": prompt.get("seed"), "exploreMode": prompt.get("exploreMode", True),
            "imageAssetId1": self.upload_asset(email, start_frame) if start_frame else None,
            "imageAssetId2": self.upload_asset(email, prompt["lastImage"]) if prompt.get("lastImage") else None,
        }
        body = {k: v for k, v in body.items() if v is not None}  # JSON.stringify drops undefined
        res = httpx.post(f"{self.base}/v1/runwayml/videos/create", json=body,
                         headers=self.headers(**{"Content-Type": "application/json"}))
        self.log.append(("videos/create", res.status_code))
        if res.status_code == 200:
            task_id = res.json().get("taskId")
            assert task_id, res.text
            self.results.append(f"{task_id},#{index}:{prompt.get('text_prompt')}")
            self.seen_status.setdefault(task_id, []).append(res.json()["status"])
        return res.status_code

    def execute(self, email: str) -> None:
        accounts = self.fetch_accounts()
        assert accounts[email] and not accounts[email].get("error")
        for i, prompt in enumerate(PROMPTS):
            while True:
                code = self.submit_video(email, prompt, i + 1)
                if code == 429:
                    time.sleep(SLEEP_429)
                    continue
                assert code != 412, "account ran out of credits"
                break

    def download(self, timeout: float = 90) -> dict[str, bytes]:
        saved = {}
        for line in self.results:
            task_id, _prompt = line.split(",")
            filename = task_id.replace(":", "_") + ".mp4"
            deadline = time.monotonic() + timeout
            while True:
                res = httpx.get(f"{self.base}/v1/runwayml/tasks/{task_id}", headers=self.headers())
                self.log.append(("tasks", res.status_code))
                assert res.is_success, res.text
                task = res.json()
                self.seen_status[task_id].append(task["status"])
                assert task["status"] != "FAILED", task
                if task["status"] == "SUCCEEDED":
                    video = httpx.get(task["artifacts"][0]["url"])  # plain fetch: no Authorization
                    assert video.is_success
                    saved[filename] = video.content
                    break
                assert time.monotonic() < deadline, task
                time.sleep(SLEEP_DOWNLOAD)
        return saved


def test_runway_script_flow(upstream, live_api, sandbox, fleet, settings):
    upstream.runway(EMAIL, 2, duration=0.6)
    upstream.runway("other@example.com", 3, duration=0.6)  # configured, but the script pins EMAIL
    script = RunwayScript(str(live_api.base_url).rstrip("/"), settings.api_tokens[0], {"frame.gif": GIF})

    script.execute(EMAIL)  # workers start afterwards, so which creates wait is certain
    assert [name for name, _ in script.log].count("assets") == 1  # uploaded once, reused (script cache)
    assert all(code == 200 for _, code in script.log), script.log
    assert len(script.results) == len(PROMPTS)
    first = [statuses[0] for statuses in script.seen_status.values()]
    assert first == ["PENDING"] * 2 + ["THROTTLED"] * 3  # 2 slots: the other 3 wait for capacity

    fleet.start(2)
    saved = script.download()
    assert len(saved) == len(PROMPTS)
    assert all(data.startswith(b"GIF89a") for data in saved.values())  # real media bytes
    for line in script.results:
        task_id = line.split(",")[0]
        assert task_id.startswith(f"user:dispatcher-runwayml:{EMAIL}-task:") and "/" not in task_id
        assert "THROTTLED" in script.seen_status[task_id] or "PENDING" in script.seen_status[task_id]

    stats = sandbox.get("/_sandbox/stats", params={"provider": "runwayml"}).json()
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    assert stats["users"][EMAIL]["submitted"] == len(PROMPTS)
    assert stats["users"][EMAIL]["max_concurrent"] <= 2
    assert stats["users"]["other@example.com"]["submitted"] == 0
