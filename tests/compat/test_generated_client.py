"""Clients made from the API's own document: a Python client generated with openapi-python-client
imports and runs a Runway create then status against the running API, sandbox and workers; and
Swagger UI at `/docs` renders in a browser that cannot reach the internet."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys

import pytest

PACKAGE = "dispatcher_generated_client"


def _generate(live_api, tmp_path):
    pytest.importorskip("openapi_python_client", reason="openapi-python-client is not installed "
                                                        "(pip install -e '.[dev]')")
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(live_api.get("/openapi.json").json()))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no formatter needed to import the result
    done = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document),
                           "--output-path", str(tmp_path / PACKAGE), "--meta", "none", "--config", str(config),
                           "--fail-on-warning"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def generated(live_api, tmp_path):
    """The generated package, imported from tmp_path (and forgotten afterwards)."""
    _generate(live_api, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_a_generated_client_runs_a_runway_create_then_status(generated, live_api, upstream, fleet, settings,
                                                             wait_for):
    upstream.runway("generated@example.com", 2, duration=0.5)
    fleet.start(1)
    create = importlib.import_module(f"{PACKAGE}.api.runway.runwayml_compat_create")
    status = importlib.import_module(f"{PACKAGE}.api.runway.runwayml_compat_status")
    body_model = importlib.import_module(f"{PACKAGE}.models.runwayml_compat_create_body").RunwaymlCompatCreateBody
    task_model = importlib.import_module(f"{PACKAGE}.models.runway_task").RunwayTask
    client = generated.AuthenticatedClient(base_url=str(live_api.base_url), token=settings.api_tokens[0])

    body = body_model.from_dict({"text_prompt": "a lighthouse at dawn", "replyRef": "typed-1"})
    task = create.sync(operation="gen3turbo", client=client, body=body)
    assert isinstance(task, task_model), task
    assert task.task_id.startswith("user:dispatcher-runwayml-task:") and task.reply_ref == "typed-1"
    assert task.task_type == "gen3turbo/create" and task.status in ("PENDING", "RUNNING")

    done = wait_for(lambda: status.sync(task_id=task.task_id, client=client),
                    lambda t: isinstance(t, task_model) and t.status in ("SUCCEEDED", "FAILED"))
    assert done.status == "SUCCEEDED" and done.email == "generated@example.com" and done.progress_ratio == 1
    assert done.artifacts and done.artifacts[0].url.startswith("http")

    missing = status.sync_detailed(task_id="user:dispatcher-runwayml-task:" + "0" * 32, client=client)
    assert missing.status_code == 404 and missing.parsed.code == 404  # errors parse as the Error model


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


def test_swagger_ui_renders_without_internet(live_api, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    url = f"{live_api.base_url}/docs"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no name but loopback resolves: offline
           "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-1000:]
    dom = done.stdout
    assert 'class="swagger-ui' in dom and "opblock" in dom, dom[:2000]  # the operations were drawn
    assert "/v1/runwayml/tasks/{taskId}" in dom and "Authorize" in dom
