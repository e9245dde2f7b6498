"""The OpenAPI documents derived from the specs, and the mock fuzzed against them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
import yaml

from contracts.openapi import SchemaResult, openapi_document, run_schema_checks
from contracts.spec import Spec, SpecSet, builtin_specs_dir, load_specs
from mock_server.app import create_app
from mock_server.clock import Clock
from tests.conftest import SyncASGITransport

PROVIDERS = ["anyfast", "apiyi", "dashscope"]
KEY = "sk-openapi-0123456789"
Send = Callable[[str, str, Mapping[str, str], bytes | None], tuple[int, Mapping[str, str], bytes]]


@pytest.fixture
def serve_mock() -> Iterator[Callable[..., Callable[[str], Send]]]:
    """Build an in-process mock; give back, per provider, a ``send`` under its prefix."""
    opened: list[tuple[httpx.Client, SyncASGITransport]] = []

    def build(**options: Any) -> Callable[[str], Send]:
        options.setdefault("timing", "instant")
        transport = SyncASGITransport(create_app(**options))
        client = httpx.Client(transport=transport, base_url="http://testserver")
        opened.append((client, transport))

        def for_provider(provider: str) -> Send:
            def send(
                method: str, path: str, headers: Mapping[str, str], body: bytes | None
            ) -> tuple[int, Mapping[str, str], bytes]:
                answer = client.request(
                    method, f"/{provider}{path}", headers=dict(headers), content=body
                )
                return answer.status_code, answer.headers, answer.content

            return send

        return for_provider

    yield build
    for client, transport in opened:
        client.close()
        transport.close()


def edited_specs(tmp_path: Path, file: str, change: Callable[[dict[str, Any]], None]) -> SpecSet:
    """The built-in specs with one file changed, loaded from a copy."""
    directory = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), directory)
    doc = yaml.safe_load((directory / file).read_text())
    change(doc)
    (directory / file).write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_specs(directory)


def describe(result: SchemaResult) -> str:
    return "\n".join(
        f"{p.operation} [{p.check}] {p.message}\n  {p.curl('http://127.0.0.1:8000')}"
        for p in result.problems
    )


def schemas_in(node: Any) -> Iterator[Any]:
    """Every JSON Schema an OpenAPI document holds (parameters, bodies, responses, components)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield value
            elif key == "schemas" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from schemas_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from schemas_in(value)


# -- the documents ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_document_is_valid_openapi_31(specs: SpecSet, provider: str) -> None:
    spec = specs[provider]
    document = openapi_document(spec)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": spec.base_url()}]
    loaded = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    loaded.validate()  # the OpenAPI 3.1 meta-schema
    embedded = list(schemas_in(document))
    assert len(embedded) > 10
    for schema in embedded:
        jsonschema.Draft202012Validator.check_schema(schema)
    labels = {result.ok().label for result in loaded.get_all_operations()}
    assert labels == {f"{op.method} {op.path}" for op in spec.operations.values()}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_document_names_every_operation_and_model(specs: SpecSet, provider: str) -> None:
    spec = specs[provider]
    document = openapi_document(spec, server_url="http://127.0.0.1:8000/" + provider)
    operations = {
        body["operationId"]: (method.upper(), path)
        for path, methods in document["paths"].items()
        for method, body in methods.items()
    }
    assert operations == {kind: (op.method, op.path) for kind, op in spec.operations.items()}
    create = document["paths"][spec.operations["create"].path]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["discriminator"]["mapping"]) == set(spec.models)
    components = document["components"]["schemas"]
    for name, rules in spec.models.items():
        model_body = components[f"CreateRequest.{name}"]
        assert model_body["properties"][spec.model_path] == {"const": name}
        flat = str(model_body)
        for param in rules.parameters.values():
            assert repr(param.name) in flat, (name, param.name)
    # Every status the catalogue gives a violation of this operation is documented.
    query = document["paths"][spec.operations["query"].path]["get"]
    assert str(spec.violations["auth_missing"].error.status) in query["responses"]
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_document_carries_the_spec_rules(specs: SpecSet) -> None:
    """Parameters, prompt, media counts and the error envelope's codes come from the YAML."""
    spec = specs["dashscope"]
    document = openapi_document(spec)
    i2v = document["components"]["schemas"]["CreateRequest.happyhorse-1.0-i2v"]
    parameters = i2v["properties"]["parameters"]["properties"]
    assert parameters["duration"]["minimum"] == 3 and parameters["duration"]["maximum"] == 15
    assert parameters["resolution"]["enum"] == ["720P", "1080P"]
    assert parameters["ratio"] is False  # not supported by image-to-video: refused by name
    prompt = i2v["properties"]["input"]["properties"]["prompt"]
    assert prompt["maxLength"] == 2500 and "prompt" not in i2v["properties"]["input"]["required"]
    media = i2v["properties"]["input"]["properties"]["media"]
    assert {
        "contains": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"const": "first_frame"}},
        },
        "minContains": 1,
        "maxContains": 1,
    } in media["allOf"]
    assert media["items"]["x-paddock-media"]["first_frame"]["min_side"] == 300
    create = document["paths"][spec.operations["create"].path]["post"]
    assert create["parameters"][0] == {
        "name": "X-DashScope-Async",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "enum": ["enable"]},
        "x-paddock-source": "seed 003",
    }
    unauthorized = create["responses"]["401"]["content"]["application/json"]["schema"]
    assert unauthorized["properties"]["code"]["enum"] == ["InvalidApiKey"]
    assert set(unauthorized["required"]) == {"request_id", "code", "message"}
    anyfast = openapi_document(specs["anyfast"])
    denied = anyfast["paths"]["/v1/video/generations"]["post"]["responses"]["401"]
    envelope = denied["content"]["application/json"]["schema"]
    assert envelope["properties"]["error"]["properties"]["type"]["enum"] == ["authentication_error"]


# -- the mock conforms --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_mock_conforms_to_its_document(
    specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]], provider: str
) -> None:
    send = serve_mock()(provider)
    result = run_schema_checks(specs[provider], send, api_key=KEY, max_examples=20, seed=0)
    assert result.ok, describe(result)
    assert result.cases >= 60


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "FAILED", "UNKNOWN"])
def test_the_mock_conforms_in_every_state(
    specs: SpecSet,
    serve_mock: Callable[..., Callable[[str], Send]],
    provider: str,
    state: str,
) -> None:
    """Tasks held queued (a frozen clock), running or failed (the mock's scenario header), expired.

    With the instant run above (SUCCEEDED, and UNKNOWN for ids never issued)
    every state's shape meets the document. A queued task is canceled where
    the provider can, then read back and listed CANCELED.
    """
    spec = specs[provider]
    clock = Clock(speed=0)
    inner = serve_mock(timing="fast" if state == "PENDING" else "instant", clock=clock)(provider)
    scenario = {"RUNNING": "stuck", "FAILED": "fail=" + spec.violations["server_error"].error.key}
    create_path = spec.operations["create"].path
    seen: list[str] = []

    def send(
        method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        creating = method == "POST" and path == create_path
        if creating and state in scenario:
            headers = {**headers, "X-Paddock-Scenario": scenario[state]}
        answer = inner(method, path, headers, body)
        if creating and state == "UNKNOWN":
            clock.advance(spec.task_retention + 1)  # every task expires before it is read
        seen.append(answer[2].decode())
        return answer

    result = run_schema_checks(spec, send, api_key=KEY, max_examples=5, seed=1)
    assert result.ok, describe(result)
    expected = [state] + (
        ["CANCELED"] if state == "PENDING" and "cancel" in spec.operations else []
    )
    for wanted in expected:
        word = spec.word(wanted)
        assert any(f'"{word}"' in text for text in seen), f"no {wanted} task was read"


def test_runs_are_repeatable_and_can_leave_create_out(
    specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]]
) -> None:
    spec = specs["anyfast"]
    runs: list[list[tuple[str, str, bytes | None]]] = []
    for _ in range(2):
        sent: list[tuple[str, str, bytes | None]] = []
        inner = serve_mock()("anyfast")

        def send(
            method: str,
            path: str,
            headers: Mapping[str, str],
            body: bytes | None,
            inner: Send = inner,
            sent: list[tuple[str, str, bytes | None]] = sent,
        ) -> tuple[int, Mapping[str, str], bytes]:
            sent.append((method, path, body))
            return inner(method, path, headers, body)

        result = run_schema_checks(spec, send, api_key=KEY, max_examples=5, include_create=False)
        assert result.ok, describe(result)
        assert result.cases == len(sent) > 0
        runs.append(sent)
    assert runs[0] == runs[1]
    assert all(method == "GET" for method, _, _ in runs[0])


# -- and finds it when it does not --------------------------------------------------------------


def _find(result: SchemaResult, operation: str, check: str) -> str:
    found = [p for p in result.problems if p.operation == operation and p.check == check]
    assert found, f"no {check} problem on {operation}:\n{describe(result)}"
    return found[0].message


def test_a_renamed_response_field_is_found(
    tmp_path: Path, specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]]
) -> None:
    def rename(doc: dict[str, Any]) -> None:
        output = doc["responses"]["query"]["states"]["SUCCEEDED"]["output"]
        output["video_link"] = output.pop("video_url")

    drifted = edited_specs(tmp_path, "dashscope.yaml", rename)
    send = serve_mock(specs=drifted)("dashscope")
    spec = specs["dashscope"]  # the document still says what the built-in spec says
    result = run_schema_checks(spec, send, api_key=KEY, max_examples=5)
    message = _find(result, "GET /api/v1/tasks/{task_id}", "response_schema_conformance")
    assert "video_url" in message and "/output" in message
    problem = next(p for p in result.problems if p.check == "response_schema_conformance")
    line = problem.curl("http://127.0.0.1:8000/dashscope")
    assert KEY not in line and '"${DASHSCOPE_API_KEY}"' in line
    assert line.startswith("curl -sS -X GET 'http://127.0.0.1:8000/dashscope/api/v1/tasks/")


def test_a_changed_error_status_is_found(
    tmp_path: Path, specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]]
) -> None:
    def move(doc: dict[str, Any]) -> None:
        doc["errors"]["TaskNotExist"]["status"] = 410

    send = serve_mock(specs=edited_specs(tmp_path, "anyfast.yaml", move))("anyfast")
    result = run_schema_checks(specs["anyfast"], send, api_key=KEY, max_examples=5)
    message = _find(result, "GET /v1/video/generations/{task_id}", "status_code_conformance")
    assert "410" in message and "task_not_exist" in message


def test_a_changed_error_code_is_found(
    tmp_path: Path, specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]]
) -> None:
    """Same status, another code: the envelope's code is an enum per status."""

    def recode(doc: dict[str, Any]) -> None:
        doc["errors"]["InvalidApiKey"]["code"] = "Unauthorized"

    send = serve_mock(specs=edited_specs(tmp_path, "dashscope.yaml", recode))("dashscope")
    spec: Spec = specs["dashscope"]
    result = run_schema_checks(spec, send, api_key=KEY, max_examples=5, include_create=False)
    problems = [p for p in result.problems if p.check == "response_schema_conformance"]
    assert problems, describe(result)
    assert all("Unauthorized" in p.message and "/code" in p.message for p in problems)


def test_a_tightened_request_rule_is_found(
    tmp_path: Path, specs: SpecSet, serve_mock: Callable[..., Callable[[str], Send]]
) -> None:
    """The mock refusing what the document allows: schemathesis' positive data acceptance."""

    def tighten(doc: dict[str, Any]) -> None:
        # Every model: the seeded generator draws a long duration for some
        # model, not necessarily for the one a single-model edit would pick.
        for model in doc["models"].values():
            if "duration" in model.get("parameters", {}):
                model["parameters"]["duration"]["max"] = 10

    send = serve_mock(specs=edited_specs(tmp_path, "anyfast.yaml", tighten))("anyfast")
    result = run_schema_checks(specs["anyfast"], send, api_key=KEY, max_examples=10)
    message = _find(result, "POST /v1/video/generations", "positive_data_acceptance")
    assert "refused with 400" in message and "between 3 and 10" in message
