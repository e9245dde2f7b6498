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
    before = {t.id: t.to_json() for t in mock.state.store.tasks()}
    if isinstance(body, dict) and not raw:
        body = {"model": model, **body}
    content = json.dumps(body).encode()
    response = mock.client.post(CREATE_PATHS[provider], content=content, headers=HEADERS[provider])
    assert response.status_code < 500 or response.status_code in documented_5xx(specs, provider), (
        response.text
    )
    assert response.headers["content-type"] == "application/json"
    after = {t.id: t.to_json() for t in mock.state.store.tasks()}
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
