"""Property-based requests generated from /openapi.json (schemathesis): never a 5xx, and
every answer matches the schema the OpenAPI document declares for its status."""

from __future__ import annotations

import json
import re

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.errors import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from ..support.server_api import Api, admin  # noqa: E402

#: Examples per operation: enough to hit bad types, missing fields and odd strings, in < 60 s.
EXAMPLES = 15
#: The event stream never ends by design; it has its own tests.
SKIP = {"/v1/events/stream"}


#: A 5xx, or an answer whose body breaks the schema declared for its status.
CHECKS = [not_a_server_error, response_schema_conformance]

#: Every role's token is sent: each sees its own side of the API (403s for most, real work
#: for some), and none may find a 5xx or an answer its schema does not describe.
ROLES = ("operator", "user", "viewer", "worker")


@pytest.fixture(scope="module")
def server(shared_app):  # type: ignore[no-untyped-def]
    api = admin(shared_app)
    # Some state, so generated ids sometimes meet real rows.
    api.submit("seed-run")
    api.claim("box-1")
    api.close()
    return shared_app


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:  # type: ignore[no-untyped-def]
    api = admin(server)
    try:
        out = {role: api.token(f"schema-{role}", role) for role in ROLES if role != "operator"}
    finally:
        api.close()
    return {"operator": server.admin_token, **out}


def test_openapi_document(server) -> None:  # type: ignore[no-untyped-def]
    doc = Api(server, None).get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/v1/runs", "/v1/runs/{run_id}", "/v1/workers/claim", "/v1/tokens",
                 "/v1/attempts/{attempt_id}/heartbeat", "/v1/manifest/reload",
                 "/v1/runs/{run_id}/artifacts/{name}", "/v1/blobs/{sha256}"):
        assert path in paths, path
    body = doc["components"]["schemas"]["RunRequest"]
    assert body["additionalProperties"] is False and "name" in body["required"]
    # Answers are declared as they are: the one error shape for every error status (not
    # FastAPI's HTTPValidationError, which the API never sends), and models for successes.
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in paths.items():
        for method, op in ops.items():
            for status in ("401", "403", "404", "422"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == \
                    error, (method, path, status)
    claim = paths["/v1/workers/claim"]["post"]["responses"]
    assert claim["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Claim"} and "204" in claim
    assert schemas["Token"]["additionalProperties"] is False
    assert {"hosts", "max_hosts"} <= set(schemas["Token"]["required"])
    # Answers name their models by reference, and the models join the components when the
    # document is made: every reference resolves, nested models' included (ErrorBody holds
    # ErrorInfo, which holds ErrorItem), and no null default is written.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert {"ErrorBody", "ErrorInfo", "ErrorItem", "Health", "Accepted", "Run", "LocalStart",
            "RunRequest"} <= refs
    assert refs <= set(schemas), refs - set(schemas)
    assert list(schemas) == sorted(schemas)
    assert "default" not in schemas["ErrorItem"]["properties"]["field"]
    submit = paths["/v1/runs"]["post"]["responses"]["201"]["content"]["application/json"]
    assert submit["schema"] == {"anyOf": [{"$ref": "#/components/schemas/Run"},
                                          {"$ref": "#/components/schemas/LocalStart"}]}


@pytest.mark.parametrize("role", ROLES)
def test_no_server_errors_and_answers_match_the_schema(  # type: ignore[no-untyped-def]
        server, tokens: dict[str, str], role: str) -> None:
    http = server.client(timeout=10)
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    failures = []
    count = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            continue
        count += 1

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case) -> None:  # type: ignore[no-untyped-def]
            kw = case.as_transport_kwargs(base_url=server.url, headers=headers)
            resp = http.request(kw.pop("method"), kw.pop("url"), **http_kwargs(kw))
            try:
                case.validate_response(resp, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                failures.append((case.method, case.formatted_path, resp.status_code,
                                 [f.title for f in group.exceptions], resp.text[:300]))

        check()
    http.close()
    assert count >= 30
    assert failures == [], "\n".join(map(str, failures))


def http_kwargs(kw: dict) -> dict:  # type: ignore[type-arg]
    """Schemathesis's request arguments (the ``requests`` library's names) for httpx."""
    out = {k: kw[k] for k in ("headers", "params", "cookies", "json", "files") if k in kw}
    if "data" in kw:
        out["data" if isinstance(kw["data"], dict) else "content"] = kw["data"]
    unknown = set(kw) - set(out) - {"data", "timeout"}
    assert not unknown, unknown
    return out


def test_the_worker_paths_real_answers_match_their_declared_models(app_server) -> None:  # type: ignore[no-untyped-def]
    """Generated requests seldom reach a real claim or heartbeat: these answers are checked
    against the models the document declares for them, which refuse unknown fields (a field
    added to an answer without its declaration fails here)."""
    from runyard.server import schemas

    api = admin(app_server)
    try:
        run = api.submit("declared")
        claim = api.claim("box-1")
        assert claim is not None and claim["run"]["id"] == run["id"]
        schemas.Claim.model_validate(claim)
        order = api.ok("POST", f"/v1/attempts/{claim['attempt']['id']}/heartbeat",
                       json={"lease": claim["lease"], "running": True})
        schemas.StopOrder.model_validate(order)
        schemas.WorkerPage.model_validate(api.ok("GET", "/v1/workers"))
        schemas.RunDetail.model_validate(api.ok("GET", f"/v1/runs/{run['id']}"))
        schemas.RunPage.model_validate(api.ok("GET", "/v1/runs"))
    finally:
        api.close()


def test_two_models_of_one_name_are_refused_not_merged() -> None:
    """A request body named like an answer's model would be overwritten in the components."""
    from runyard.server import schemas

    document = {"components": {"schemas": {"ErrorBody": {"type": "object", "properties": {}}}}}
    with pytest.raises(RuntimeError, match="two models named ErrorBody"):
        schemas.add_components(document)
