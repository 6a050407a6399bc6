"""The OpenAPI document and the interactive docs: served without internet, the Bearer scheme
declared, `/health` in it, typed answers, JSON-only request bodies, and a valid document."""

from __future__ import annotations

import re

import pytest

from dispatcher import providers

NO_TOKEN = {"Authorization": ""}


@pytest.fixture
def document(api) -> dict:
    res = api.get("/openapi.json", headers=NO_TOKEN)
    assert res.status_code == 200
    return res.json()


def _schema_ref(operation: dict) -> str:
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return schema.get("$ref") or schema.get("items", {}).get("$ref") or str(schema.get("anyOf"))


def test_docs_page_loads_everything_from_the_dispatcher_itself(api):
    page = api.get("/docs", headers=NO_TOKEN)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not re.search(r"https?://", page.text), "the page would fetch something from the internet"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs?asset=swagger-ui-bundle.js" in sources and "/docs?asset=swagger-ui.css" in sources
    for source in sources:
        res = api.get(source, headers=NO_TOKEN)  # a browser sends no Bearer token for these
        assert res.status_code == 200 and res.content, source
        assert "public" in res.headers["cache-control"]
    bundle = api.get("/docs?asset=swagger-ui-bundle.js", headers=NO_TOKEN)
    assert bundle.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in bundle.content
    assert len(bundle.content) > 500_000  # the real bundle, Swagger UI 5 (reads OpenAPI 3.1)
    assert api.get("/docs?asset=swagger-ui.css", headers=NO_TOKEN).headers["content-type"].startswith("text/css")
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    assert api.get("/docs/oauth2-redirect", headers=NO_TOKEN).status_code == 200


@pytest.mark.parametrize("name", ["../__init__.py", "index.html", "swagger-ui-bundle.js.map", "/etc/passwd"])
def test_docs_serve_only_their_own_files(api, name):
    res = api.get("/docs", params={"asset": name}, headers=NO_TOKEN)
    assert res.status_code == 404 and res.json()["code"] == 404


def test_redoc_is_not_served_since_it_would_need_the_internet(api):
    assert api.get("/redoc").status_code == 404


def test_the_document_declares_the_bearer_scheme_and_health(document):
    assert document["components"]["securitySchemes"] == {"bearerAuth": {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]
        ["bearerAuth"]["description"]}}
    assert document["security"] == [{"bearerAuth": []}]
    health = document["paths"]["/health"]["get"]
    assert health["security"] == [] and "401" not in health["responses"]
    assert _schema_ref(health) == "#/components/schemas/Health"
    assert "/v2/account" in document["paths"]


def test_the_document_is_valid_openapi(document):
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is not installed "
                                                                     "(pip install -e '.[dev]')")
    validator.validate(document)


def test_request_bodies_are_declared_as_json_only(document):
    """A body declared as JSON and multipart breaks openapi-python-client (its issue #1451)."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                content = set(operation["requestBody"]["content"])
                assert content in ({"application/json"}, {"application/octet-stream"}), (method, path, content)
            assert "422" not in operation["responses"], (method, path)  # bad input answers 400 here


def test_the_main_answers_have_response_models(document):
    paths = document["paths"]
    assert _schema_ref(paths["/v2/account"]["get"]) == "#/components/schemas/UseapiAccount"
    assert _schema_ref(paths["/v1/jobs/{job_id}"]["get"]) == "#/components/schemas/Job"
    status = {"runwayml": ("/tasks/{taskId}", "RunwayTask"), "pixverse": ("/videos/{video_id}", "PixVerseVideo"),
              "minimax": ("/videos/{videoId}", "MiniMaxVideo"), "riffusion": ("/music/{job_id}", "RiffusionMusic"),
              "kling": ("/tasks/{task_id}", "KlingTask")}
    for spec in providers.all_specs():
        prefix, title = spec.api_prefix, spec.title.replace(" ", "")
        path, model = status[spec.name]
        assert _schema_ref(paths[prefix + path]["get"]) == f"#/components/schemas/{model}", spec.name
        assert _schema_ref(paths[f"{prefix}/accounts"]["get"]) == f"#/components/schemas/{title}Accounts"
        assert _schema_ref(paths[f"{prefix}/accounts/{{{spec.id_field}}}"]["get"]) == \
            f"#/components/schemas/{title}Account"
        assert _schema_ref(paths[f"{prefix}/scheduler"]["get"]) == f"#/components/schemas/{title}Running"
        assert _schema_ref(paths[f"{prefix}/scheduler/available"]["get"]) == f"#/components/schemas/{title}Available"
    assert _schema_ref(paths["/v1/minimax/images/{imageId}"]["get"]) == "#/components/schemas/MiniMaxImage"
    assert "MiniMaxImage" in _schema_ref(paths["/v1/minimax/{operation}/create"]["post"])
    assert document["paths"]["/v1/runwayml/tasks/{taskId}"]["get"]["operationId"] == "runwayml_compat_status"


def test_multipart_bodies_are_still_accepted(api, sandbox):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "form@example.com", "password": "pw"})
    res = api.post("/v1/runwayml/accounts/form@example.com",
                   data={"email": "form@example.com", "password": "pw", "maxJobs": "2"})
    assert res.status_code == 200, res.text
    task = api.post("/v1/runwayml/gen3turbo/create", data={"text_prompt": "from a form", "seconds": "5"})
    assert task.status_code == 200 and task.json()["status"] == "PENDING", task.text
