"""Whatever arrives, the mock answers in the provider's envelope and keeps its tasks intact."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.spec import SpecSet
from tests.conftest import CREATE_PATHS, HEADERS, QUERY_PATHS, Mock

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "model",
        "input",
        "prompt",
        "media",
        "parameters",
        "image",
        "images",
        "duration",
        "resolution",
        "ratio",
        "watermark",
        "seed",
        "type",
        "url",
        "first_frame",
    ]
)
bodies = st.recursive(
    json_values,
    lambda inner: st.dictionaries(field_names, inner, max_size=5),
    max_leaves=25,
)
models = st.sampled_from(
    ["happyhorse-1.0-i2v", "happyhorse-1.0-r2v", "happyhorse-1.0-t2v", "wan2.7-i2v"]
)


def documented_5xx(specs: SpecSet, provider: str) -> set[int]:
    """5xx statuses a provider's violation table itself documents (APIYI: missing media)."""
    spec = specs[provider]
    return {
        v.error.status
        for v in spec.violations.values()
        if v.error.status >= 500 and v.kind not in ("server_error",)
    }


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(provider=st.sampled_from(sorted(CREATE_PATHS)), body=bodies, model=models, raw=st.booleans())
def test_no_undocumented_5xx_and_nothing_lost(
    mock: Mock, specs: SpecSet, provider: str, body: Any, model: str, raw: bool
) -> None:
    before = {t.id: t.to_json() for t in mock.tasks()}
    if isinstance(body, dict) and not raw:
        body = {"model": model, **body}
    content = json.dumps(body).encode()
    response = mock.client.post(CREATE_PATHS[provider], content=content, headers=HEADERS[provider])
    assert response.status_code < 500 or response.status_code in documented_5xx(specs, provider), (
        response.text
    )
    assert response.headers["content-type"] == "application/json"
    after = {t.id: t.to_json() for t in mock.tasks()}
    assert {k: after[k] for k in before} == before
    if response.status_code == 200:
        created = response.json()
        task_id = created.get("task_id") or created["output"]["task_id"]
        assert mock.query(provider, task_id).status_code == 200


def test_hostile_bodies(mock: Mock) -> None:
    for content in (
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe\x00",
        b'{"model": 1e999}',
        b'{"parameters": {"duration": ' + b"9" * 5000 + b"}}",
        b"",
        b"null",
    ):
        for provider in CREATE_PATHS:
            response = mock.client.post(
                CREATE_PATHS[provider], content=content, headers=HEADERS[provider]
            )
            assert 400 <= response.status_code < 500, (provider, content[:20], response.text)
    for provider in QUERY_PATHS:
        odd = mock.client.get(
            QUERY_PATHS[provider].format("%00..%2F" + "x" * 5000), headers=HEADERS[provider]
        )
        assert odd.status_code < 500


def test_a_provider_never_reaches_another_providers_tasks(mock: Mock) -> None:
    from tests.test_mock_flows import SEED_000_APIYI

    apiyi_id = mock.create("apiyi", SEED_000_APIYI).json()["output"]["task_id"]
    cancel = mock.client.post(
        f"/dashscope/api/v1/tasks/{apiyi_id}/cancel", headers=HEADERS["dashscope"]
    )
    assert cancel.status_code == 400
    assert mock.query("dashscope", apiyi_id).json()["output"]["task_status"] == "UNKNOWN"
    assert mock.query("anyfast", apiyi_id).status_code == 404
    assert mock.query("apiyi", apiyi_id).json()["status"] == "submitted"  # untouched


def test_malformed_media_urls_and_signatures_are_4xx(mock: Mock) -> None:
    from contracts.bodies import build_create_body

    for url in (
        "http://[::1",
        "http://[abc]/x.png",
        "https://exa\uff03mple.com/a.png",
        "http://a:b/c",
    ):
        for provider in ("dashscope", "anyfast"):
            spec = mock.state.specs[provider]
            body = build_create_body(
                spec, "happyhorse-1.0-i2v", prompt="x", media=[("first_frame", url)]
            )
            response = mock.create(provider, body)
            assert 400 <= response.status_code < 500, (provider, url, response.text)
    odd = mock.client.get("/_storage/results/dashscope/x.mp4?Expires=1&Signature=%C3%A9")
    assert odd.status_code == 403
    form = mock.client.post(
        "/_storage/oss",
        data={"Signature": "\u00e9", "policy": "x", "key": "k"},
        files={"file": ("a.png", b"x", "image/png")},
    )
    assert form.status_code == 403


def test_admin_rejects_odd_limits_and_absurd_clock_jumps(mock: Mock) -> None:
    assert mock.client.get("/_paddock/requests?limit=\u00b2").status_code == 400
    assert mock.client.get("/_paddock/requests?limit=" + "9" * 5000).status_code == 400
    assert mock.client.get("/_paddock/requests?limit=0").json()["requests"] == []
    assert mock.client.post("/_paddock/clock/advance", json={"seconds": 1e12}).status_code == 400
    assert mock.client.post("/_paddock/clock/advance", json={"seconds": 1e308}).status_code == 400
    assert mock.client.get("/_paddock/health").json()["now"] is not None


def test_a_bug_in_a_handler_still_answers_in_the_envelope(mock: Mock, monkeypatch: Any) -> None:
    from mock_server import service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    from tests.test_mock_flows import SEED_003_DASHSCOPE

    task_id = mock.create("dashscope", SEED_003_DASHSCOPE).json()["output"]["task_id"]
    monkeypatch.setattr(service, "state_at", broken)
    response = mock.client.get(
        QUERY_PATHS["dashscope"].format(task_id), headers=HEADERS["dashscope"]
    )
    assert (response.status_code, response.json()["code"]) == (500, "InternalError")
    assert "boom" not in response.text
