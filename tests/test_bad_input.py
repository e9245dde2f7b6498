"""Every malformed request gets the provider's own envelope, status and code; nothing is lost.

Each case breaks exactly one rule of a valid request. The expected answer is
read from the provider's spec (its violation table and catalogue), and the
documented ones are also pinned to the words of the seed pages.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from contracts.bodies import build_create_body, create_headers
from contracts.spec import Spec
from tests.conftest import CREATE_PATHS, KEY, Mock, data_uri, image_bytes, png_uri, wav_bytes

I2V = "happyhorse-1.0-i2v"
REMOTE = "https://cdn.example.com/frame.png"


def body_for(spec: Spec, model: str = I2V, **overrides: Any) -> dict[str, Any]:
    rules = spec.models[model]
    media = [(t, REMOTE) for t, r in rules.media.items() for _ in range(r.min)]
    return build_create_body(spec, model, prompt="a calm lake", media=media, **overrides)


def gif_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480)).save(buffer, format="GIF")
    return data_uri(buffer.getvalue(), "image/gif")


Case = Callable[[Spec], tuple[dict[str, Any] | bytes, dict[str, str]]]


def body(make: Callable[[Spec], dict[str, Any]]) -> Case:
    return lambda spec: (make(spec), {})


def media(url: str | Callable[[], str], model: str = I2V, media_type: str = "first_frame") -> Case:
    def make(spec: Spec) -> tuple[dict[str, Any], dict[str, str]]:
        link = url() if callable(url) else url
        return build_create_body(spec, model, prompt="x", media=[(media_type, link)]), {}

    return make


def params(**values: Any) -> Case:
    return lambda spec: (body_for(spec, parameters=values), {})


CASES: dict[str, tuple[Case, str]] = {
    "not json": (lambda s: (b"{not json", {}), "body_not_json"),
    "json array": (lambda s: (b"[1, 2]", {}), "body_not_object"),
    "wrong content type": (
        lambda s: (json.dumps(body_for(s)).encode(), {"Content-Type": "text/plain"}),
        "content_type",
    ),
    "no content type": (
        lambda s: (json.dumps(body_for(s)).encode(), {"Content-Type": ""}),
        "content_type",
    ),
    "oversized body": (lambda s: (b" " * (s.body_limit + 1), {}), "body_too_large"),
    "no auth": (lambda s: (body_for(s), {"Authorization": ""}), "auth_missing"),
    "wrong auth scheme": (
        lambda s: (body_for(s), {"Authorization": f"Basic {KEY}"}),
        "auth_invalid",
    ),
    "no model": (
        body(lambda s: {k: v for k, v in body_for(s).items() if k != "model"}),
        "model_missing",
    ),
    "model not a string": (body(lambda s: {**body_for(s), "model": 7}), "field_type"),
    "unknown model": (
        body(lambda s: {**body_for(s), "model": "happyhorse-9.9-i2v"}),
        "model_unknown",
    ),
    "no media": (body(lambda s: build_create_body(s, I2V, prompt="x")), "media_missing"),
    # AnyFast uses only the first of several i2v `images`, so its count rule is r2v's 1-3.
    "too many media": (
        body(
            lambda s: (
                build_create_body(s, I2V, prompt="x", media=[("first_frame", REMOTE)] * 2)
                if s.media_form == "typed_list"
                else build_create_body(
                    s, "happyhorse-1.0-r2v", prompt="x", media=[("reference_image", REMOTE)] * 4
                )
            )
        ),
        "media_count",
    ),
    "media url not a string": (
        body(lambda s: build_create_body(s, I2V, prompt="x", media=[("first_frame", 5)])),  # type: ignore[list-item]
        "field_type",
    ),
    # typed lists: driving_audio to HappyHorse i2v; flat bodies: an image to t2v.
    "media the model does not take": (
        lambda s: (
            media(REMOTE, media_type="driving_audio")(s)
            if s.media_form == "typed_list"
            else ({**build_create_body(s, "happyhorse-1.0-t2v", prompt="x"), "image": REMOTE}, {})
        ),
        "media_type",
    ),
    "ftp media url": (media("ftp://cdn.example.com/frame.png"), "media_url"),
    "corrupt data uri": (media("data:image/png;base64,iVBORw0KGgoAAAA"), "media_unreadable"),
    "image too small": (media(lambda: png_uri(200, 200)), "media_dimensions"),
    "image aspect 3:1": (media(lambda: png_uri(960, 320)), "media_aspect"),
    "gif image": (media(gif_uri), "media_format"),
    "image over 10 MB": (
        media(lambda: data_uri(image_bytes(2000, 1800, "BMP"), "image/bmp")),
        "media_bytes",
    ),
    "prompt not a string": (
        body(lambda s: build_create_body(s, I2V, prompt=["x"], media=[("first_frame", REMOTE)])),
        "field_type",
    ),  # type: ignore[arg-type]
    "duration too long": (params(duration=16), "param_range"),
    "duration too short": (params(duration=1), "param_range"),
    "duration as a string": (params(duration="5"), "field_type"),
    "duration as a float": (params(duration=5.5), "field_type"),
    "resolution not in enum": (params(resolution="4K"), "param_enum"),
    "watermark as a string": (params(watermark="true"), "field_type"),
    "seed negative": (params(seed=-1), "param_range"),
}

PROVIDERS = ["dashscope", "apiyi", "anyfast"]


def send(
    mock: Mock, provider: str, payload: dict[str, Any] | bytes, headers: dict[str, str]
) -> Any:
    spec = mock.state.specs[provider]
    merged = {**create_headers(spec, KEY), **headers}
    merged = {k: v for k, v in merged.items() if v != ""}
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return mock.client.post(CREATE_PATHS[provider], content=content, headers=merged)


def expected(spec: Spec, kinds: str) -> list[tuple[int, str]]:
    out = []
    for kind in kinds.split("|"):
        error = spec.violations[kind].error
        out.append((error.status, error.code))
    return out


def code_of(spec: Spec, response: Any) -> str:
    """Read the code back through the spec's own envelope template."""
    body = response.json()
    for envelope in spec.envelopes.values():
        try:
            return str(envelope.parse(body)["error.code"])
        except (ValueError, KeyError):
            continue
    raise AssertionError(f"{response.text} fits none of {spec.provider}'s envelopes")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_the_providers_answer_and_loses_nothing(
    mock: Mock, provider: str, case: str
) -> None:
    spec = mock.state.specs[provider]
    good = mock.create(provider, body_for(spec))
    assert good.status_code == 200, good.text
    [before] = [t.to_json() for t in mock.tasks()]

    make, kinds = CASES[case]
    payload, headers = make(spec)
    response = send(mock, provider, payload, headers)

    assert 400 <= response.status_code < 600
    assert (response.status_code, code_of(spec, response)) in expected(spec, kinds), response.text
    assert response.headers["content-type"] == "application/json"
    marks = mock.client.get("/_paddock/requests?limit=1").json()["requests"][0]["marks"]
    if "violation" in marks:  # body-level rules name their kind in the journal
        assert marks["violation"].split(" ")[0] in kinds.split("|"), marks
    # Nothing stored changed, nothing was added, and the server keeps serving.
    assert [t.to_json() for t in mock.tasks()] == [before]
    assert mock.create(provider, body_for(spec)).status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_async_header_rules_follow_each_spec(mock: Mock, provider: str) -> None:
    spec = mock.state.specs[provider]
    response = send(mock, provider, body_for(spec), {"X-DashScope-Async": ""})
    if spec.operations["create"].headers:
        assert response.status_code == 403
        assert "current user api does not support synchronous calls" in response.text
        wrong = send(mock, provider, body_for(spec), {"X-DashScope-Async": "disable"})
        assert wrong.status_code == 403
    else:
        assert response.status_code == 200  # AnyFast needs no async header


def test_documented_messages_are_the_providers_own(make_mock: Callable[..., Mock]) -> None:
    mock = make_mock(api_keys=[KEY])
    ds, ay, af = (mock.state.specs[p] for p in PROVIDERS)

    missing = send(mock, "dashscope", body_for(ds), {"Authorization": ""})
    assert missing.status_code == 401
    assert (
        missing.json()["code"] == "InvalidApiKey"
        and missing.json()["message"] == "No API-key provided."
    )
    wrong = send(mock, "dashscope", body_for(ds), {"Authorization": "Bearer sk-not-accepted"})
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Invalid API-key provided.")

    # APIYI documents a 500 for missing media, with the upstream's words.
    no_media = send(mock, "apiyi", build_create_body(ay, I2V, prompt="x"), {})
    assert no_media.status_code == 500
    assert (
        no_media.json()["error"]["message"] == f"Image-to-video model {I2V} must provide an image"
    )
    as_string = send(mock, "apiyi", body_for(ay, parameters={"duration": "5"}), {})
    assert as_string.status_code == 400
    assert "cannot unmarshal string into Go struct field" in as_string.json()["error"]["message"]
    assert "of type int" in as_string.json()["error"]["message"]

    # AnyFast's auth error is the OpenAI-style one it documents.
    denied = send(mock, "anyfast", body_for(af), {"Authorization": "Bearer sk-nope"})
    assert denied.status_code == 401
    assert denied.json() == {
        "error": {
            "message": "Invalid API key provided.",
            "type": "authentication_error",
            "code": "invalid_api_key",
        }
    }


def test_provider_differences_are_kept(mock: Mock) -> None:
    ds, ay, af = (mock.state.specs[p] for p in PROVIDERS)
    # Duration 2 s: APIYI's range is 2-15, DashScope's and AnyFast's 3-15.
    assert send(mock, "apiyi", body_for(ay, parameters={"duration": 2}), {}).status_code == 200
    assert send(mock, "dashscope", body_for(ds, parameters={"duration": 2}), {}).status_code == 400
    assert send(mock, "anyfast", body_for(af, parameters={"duration": 2}), {}).status_code == 400
    # ratio for image-to-video: refused by DashScope (seed 003 FAQ), accepted by AnyFast (seed 004).
    assert (
        send(mock, "dashscope", body_for(ds, parameters={"ratio": "16:9"}), {}).status_code == 400
    )
    assert send(mock, "anyfast", body_for(af, parameters={"ratio": "16:9"}), {}).status_code == 200
    # A prompt is optional for DashScope i2v, required by APIYI and AnyFast.
    for provider, status in (("dashscope", 200), ("apiyi", 400), ("anyfast", 400)):
        spec = mock.state.specs[provider]
        bare = build_create_body(spec, I2V, media=[("first_frame", REMOTE)])
        assert send(mock, provider, bare, {}).status_code == status, provider


def test_dashscope_specific_rules(mock: Mock) -> None:
    ds = mock.state.specs["dashscope"]
    no_input = send(mock, "dashscope", {"model": I2V}, {})
    assert (no_input.status_code, no_input.json()["code"]) == (400, "BadRequest.EmptyInput")
    oss = send(
        mock,
        "dashscope",
        build_create_body(ds, I2V, media=[("first_frame", "oss://dashscope-instant/x.png")]),
        {},
    )
    assert (oss.status_code, oss.json()["code"]) == (400, "InvalidURL")
    assert "X-DashScope-OssResourceResolve" in oss.json()["message"]
    params_not_object = send(mock, "dashscope", {**body_for(ds), "parameters": [1]}, {})
    assert (params_not_object.status_code, params_not_object.json()["code"]) == (
        400,
        "InvalidParameter",
    )
    # A prompt past 2,500 characters is truncated, not refused (seed 003).
    long = send(
        mock,
        "dashscope",
        body_for(ds) | {"input": {**body_for(ds)["input"], "prompt": "y" * 3000}},
        {},
    )
    assert long.status_code == 200
    task = mock.task(long.json()["output"]["task_id"])
    assert task is not None and task.request.prompt is not None and len(task.request.prompt) == 2500


def test_driving_audio_is_probed(mock: Mock) -> None:
    ay = mock.state.specs["apiyi"]
    good = build_create_body(
        ay,
        "wan2.7-i2v",
        prompt="rap",
        media=[("first_frame", png_uri()), ("driving_audio", data_uri(wav_bytes(3), "audio/wav"))],
    )
    assert send(mock, "apiyi", good, {}).status_code == 200
    short = build_create_body(
        ay,
        "wan2.7-i2v",
        prompt="rap",
        media=[("first_frame", png_uri()), ("driving_audio", data_uri(wav_bytes(1), "audio/wav"))],
    )
    response = send(mock, "apiyi", short, {})
    assert response.status_code == 400
    assert "lasts 1.00 s" in response.json()["error"]["message"]
    image_as_audio = build_create_body(
        ay,
        "wan2.7-i2v",
        prompt="rap",
        media=[("first_frame", png_uri()), ("driving_audio", png_uri())],
    )
    assert send(mock, "apiyi", image_as_audio, {}).status_code == 400


def test_wrong_method_and_unknown_paths_answer_in_the_envelope(mock: Mock) -> None:
    got = mock.client.get(CREATE_PATHS["anyfast"], headers={"Authorization": f"Bearer {KEY}"})
    assert (got.status_code, got.json()["code"]) == (404, "not_found")
    assert mock.client.get("/apiyi/v1/nothing").json()["error"]["code"] == "NotFound"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_auth_is_checked_before_the_body(mock: Mock, provider: str) -> None:
    spec = mock.state.specs[provider]
    response = send(mock, provider, b" " * (spec.body_limit + 1), {"Authorization": ""})
    assert response.status_code == 401, response.text
