"""The one redaction policy: what it hides, what it keeps, and that every writer uses it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from contracts.conformance.targets import HttpTarget
from contracts.redaction import RedactingFilter, RedactionPolicy, secret_field, secret_header
from contracts.spec import SpecSet
from tests.conftest import KEY, LiveServer, Mock

# Credentials as a hostile review found them passing verbatim: (header, value, the secret part).
ODD_HEADERS = [
    ("X-Credential", "cred-odd-1a2b3c", "cred-odd-1a2b3c"),
    ("X-Amz-Credential", "AKIAODDEXAMPLE/20260101/s3/aws4_request", "AKIAODDEXAMPLE"),
    ("X-JWT", "eyJodd.jwtpayload.jwtsig", "jwtpayload"),
    ("X-DashScope-SK", "sk-odd-dashscope-5e5e", "odd-dashscope-5e5e"),
    ("OpenAI-Organization", "org-oddorganisation77", "oddorganisation77"),
    ("Proxy-Authorization", "Basic b2RkdXNlcjpvZGRwYXNz", "b2RkdXNlcjpvZGRwYXNz"),
    ("Cookie", "session=odd-cookie-secret; theme=dark", "odd-cookie-secret"),
    ("X-Amz-Security-Token", "FwoGZXIvYXdzEOdd-token", "FwoGZXIvYXdzEOdd"),
    ("x_api_KEY", "odd-underscore-key-42", "odd-underscore-key-42"),
    ("X-Session-Id", "odd-session-31337", "odd-session-31337"),
]
HARMLESS = {
    "Content-Type": "application/json",
    "User-Agent": "paddock-test/1.0",
    "X-DashScope-Async": "enable",
    "X-DashScope-OssResourceResolve": "enable",
    "X-RateLimit-Remaining-Tokens": "9000",
}
SIGNED_MEDIA = (
    "https://media-user:media-pass-55@oss.example.com/in.png"
    "?Expires=1999999999&OSSAccessKeyId=AKID-media-66&Signature=sig-media-77"
    "&X-Amz-Signature=amzsig-88&X-Goog-Signature=googsig-99&w=720"
)
URL_SECRETS = ["media-user", "media-pass-55", "AKID-media-66", "sig-media-77", "amzsig-88"]


def _dashscope_policy(specs: SpecSet, *secrets: str) -> RedactionPolicy:
    spec = specs["dashscope"]
    assert spec.expiry_param is not None
    return RedactionPolicy(
        secrets=secrets, signature_params=spec.signature_params, keep_params=[spec.expiry_param]
    )


# -- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "secret"), ODD_HEADERS)
def test_credential_headers_are_judged_by_name_in_any_case(
    name: str, value: str, secret: str
) -> None:
    policy = RedactionPolicy()
    for shown_name in (name, name.lower(), name.upper()):
        shown = policy.headers({shown_name: value})[shown_name]
        assert secret not in shown and "REDACTED" in shown
    # The ASGI form: lower-case bytes, as the mock journal gets them.
    [(_, raw)] = policy.raw_headers([(name.lower().encode(), value.encode())])
    assert secret.encode() not in raw


def test_harmless_headers_are_kept_and_auth_keeps_its_scheme() -> None:
    policy = RedactionPolicy(marker="<redacted>")
    shown = policy.headers(
        {
            **HARMLESS,
            "Authorization": "Bearer sk-abc-123456",
            "X-Other-Auth": "sk-not-a-scheme x",
            "X-Api-Key": "",
        }
    )
    assert {k: shown[k] for k in HARMLESS} == HARMLESS
    assert shown["Authorization"] == "Bearer <redacted>"
    assert shown["X-Other-Auth"] == "<redacted>"  # an unknown first word may be the key
    assert shown["X-Api-Key"] == ""  # nothing sent, nothing to hide: a reader sees that
    assert policy.headers({"Authorization": "Bearer"}) == {"Authorization": "Bearer"}


def test_spec_headers_that_drift_revalidates_are_never_redacted(specs: SpecSet) -> None:
    # Drift re-judges recorded creates against the spec: a required header hidden
    # by the policy would read as a client that never sent it.
    for spec in specs:
        names = [rule.name for op in spec.operations.values() for rule in op.headers]
        if spec.upload_header is not None:
            names.append(spec.upload_header[0])
        assert not [n for n in names if secret_header(n)], spec.provider
        assert secret_header(spec.auth_header), spec.provider
        fields = {part for path in spec.body_fields for part in path.split(".")}
        assert not [f for f in fields if secret_field(f)], spec.provider


def test_header_values_that_hold_signed_urls_lose_the_signature(specs: SpecSet) -> None:
    policy = _dashscope_policy(specs)
    shown = policy.headers({"Location": SIGNED_MEDIA, "Referer": "https://h/?token=tok-1"})
    assert not [s for s in URL_SECRETS if s in shown["Location"]]
    assert "Expires=1999999999" in shown["Location"] and "tok-1" not in shown["Referer"]


# -- bodies -------------------------------------------------------------------------------------


def test_credential_fields_are_hidden_at_any_depth_and_in_arrays(specs: SpecSet) -> None:
    body = {
        "model": "happyhorse-1.0-i2v",
        "api_key": "body-key-1",
        "input": {
            "prompt": "a cat",
            "media": [{"type": "first_frame", "url": SIGNED_MEDIA}],
            "auth": {"apiKey": "body-key-2", "nested": [{"client_secret": "body-key-3"}]},
        },
        "parameters": {"duration": 5, "max_tokens": 10, "keyframes": [1, 2]},
        "accounts": [{"access_token": "body-key-4"}, {"Password": "body-key-5"}],
        "credentials": {"id": "body-key-6", "pin": 4321, "rotated": True, "note": None},
        "privateKey": "body-key-7",
    }
    shown_bytes = _dashscope_policy(specs).body(orjson.dumps(body))
    text = shown_bytes.decode()
    for secret in [f"body-key-{i}" for i in range(1, 8)] + URL_SECRETS + ["4321"]:
        assert secret not in text
    shown = orjson.loads(shown_bytes)
    # What is not a credential is kept exactly, and a hidden object keeps its shape.
    assert shown["parameters"] == body["parameters"]
    assert shown["input"]["prompt"] == "a cat"
    assert shown["credentials"] == {
        "id": "REDACTED",
        "pin": "REDACTED",
        "rotated": True,
        "note": None,
    }
    url = shown["input"]["media"][0]["url"]
    assert url.startswith("https://REDACTED:REDACTED@oss.example.com/in.png?Expires=1999999999&")
    assert url.endswith("&w=720")


def test_a_body_with_nothing_to_hide_is_kept_byte_for_byte() -> None:
    body = b'{ "model": "m",\n  "input": {"prompt": "token count: 5", "max_tokens": 3} }'
    assert RedactionPolicy().body(body) is body


def test_a_body_cut_at_a_limit_is_still_redacted_as_text() -> None:
    whole = orjson.dumps({"api_key": "cut-key-1", "pad": "x" * 100, "token": "cut-key-2"})
    cut = whole[: whole.index(b"cut-key-2") + 4]  # no longer JSON, the value cut in half
    shown = RedactionPolicy().body(cut)
    assert b"cut-key-1" not in shown and b"cut-" not in shown.split(b'"token"')[1]


def test_deep_json_is_bounded_not_a_crash() -> None:
    deep = '{"a":[' * 500 + '{"api_key": "deep-key-1"}' + "]}" * 500
    shown = RedactionPolicy().body(deep.encode())
    assert b"deep-key-1" not in shown


def test_known_secrets_are_hidden_anywhere_even_in_object_keys() -> None:
    policy = RedactionPolicy(secrets=["sk-known-777"])
    shown = policy.json({"sk-known-777": {"prompt": "use sk-known-777 now"}})
    assert "sk-known-777" not in json.dumps(shown)


# -- URLs and free text -------------------------------------------------------------------------


def test_urls_lose_userinfo_and_signatures_but_keep_the_expiry(specs: SpecSet) -> None:
    policy = _dashscope_policy(specs)
    shown = policy.url(SIGNED_MEDIA)
    assert not [s for s in [*URL_SECRETS, "googsig-99"] if s in shown]
    assert "Expires=1999999999" in shown and "oss.example.com/in.png" in shown
    assert policy.url("https://h/cb#access_token=frag-tok&state=1") == (
        "https://h/cb#access_token=REDACTED&state=1"
    )
    assert _dashscope_policy(specs, "sk-in-path-1").url("https://h/k/sk-in-path-1/x") == (
        "https://h/k/REDACTED/x"
    )
    assert policy.url("redis://:redis-pass@127.0.0.1:6379/0") == (
        "redis://:REDACTED@127.0.0.1:6379/0"
    )
    # A spec's own signature parameter is hidden even when its name looks harmless.
    assert "pol-1" in RedactionPolicy().url("https://h/x?Policy=pol-1")
    assert "pol-1" not in RedactionPolicy(signature_params=["Policy"]).url(
        "https://h/x?Policy=pol-1"
    )


def test_free_text_hides_urls_bearer_tokens_fields_and_known_keys(specs: SpecSet) -> None:
    policy = _dashscope_policy(specs, "sk-env-key-0001")
    line = (
        f"GET {SIGNED_MEDIA} failed (Authorization: Bearer tok-text-123456); "
        'retrying with api_key=kv-key-2 and {"password": "pw-text-3", "prompt": "kept"} '
        "using sk-env-key-0001"
    )
    shown = policy.text(line)
    for secret in [*URL_SECRETS, "tok-text-123456", "kv-key-2", "pw-text-3", "sk-env-key-0001"]:
        assert secret not in shown
    assert '"prompt": "kept"' in shown and "Bearer REDACTED" in shown
    # Error messages a provider words are not mangled: no credential-like token follows.
    message = "expected 'Bearer <key>'; max_tokens=5"
    assert policy.text(message) == message


def test_log_lines_and_tracebacks_pass_through_the_policy(specs: SpecSet) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(_dashscope_policy(specs, "sk-log-key-0042")))
    logger = logging.getLogger("paddock.test_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetch %s with %s failed", SIGNED_MEDIA, "Bearer tok-log-12345678")
        try:
            raise ValueError("upstream refused sk-log-key-0042")
        except ValueError:
            logger.exception("create failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "create failed" in text and "ValueError: upstream refused REDACTED" in text
    assert [s for s in [*URL_SECRETS, "tok-log-12345678", "sk-log-key-0042"] if s in text] == []


# -- end to end ---------------------------------------------------------------------------------


def test_the_mock_journal_holds_no_secret_and_still_shows_harmless_headers(mock: Mock) -> None:
    body = {
        "model": "happyhorse-1.0-i2v",
        "api_key": "journal-body-key-1",
        "input": {
            "prompt": "a cat",
            "media": [{"type": "first_frame", "url": SIGNED_MEDIA}],
            "extra": [{"credentials": {"secret": "journal-body-key-2"}}],
        },
        "parameters": {"resolution": "720P", "duration": 5},
    }
    headers = {name: value for name, value, _ in ODD_HEADERS} | HARMLESS
    mock.create("dashscope", body, **headers)
    # A body past the journal's 16 KiB keep is cut, so no longer JSON: still redacted.
    big = {"api_key": "journal-big-key-3", **body, "pad": "x" * 20000}
    mock.create("dashscope", big, **headers)
    journal = mock.client.get("/_paddock/requests").json()["requests"]
    assert len(journal) == 2
    text = json.dumps(journal)
    secrets = [s for _, _, s in ODD_HEADERS] + URL_SECRETS + ["googsig-99", KEY]
    secrets += ["journal-body-key-1", "journal-body-key-2", "journal-big-key-3"]
    assert [s for s in secrets if s in text] == []
    for entry in journal:
        shown = entry["headers"]
        assert shown["x-dashscope-async"] == "enable"
        assert shown["x-dashscope-ossresourceresolve"] == "enable"
        assert shown["authorization"] == "Bearer <redacted>"
        assert shown["x-dashscope-sk"] == "<redacted>"
        assert shown["proxy-authorization"] == "Basic <redacted>"
    assert "Expires=1999999999" in journal[1]["body"]


def test_the_journal_survives_hostile_nesting(mock: Mock) -> None:
    # 1000 levels: as deep as a JSON parser of ours accepts, past Python's recursion limit.
    deep = '{"a":[' * 500 + '{"api_key": "deep-key-2"}' + "]}" * 500
    reply = mock.client.post(
        "/dashscope/api/v1/services/aigc/video-generation/video-synthesis",
        content=deep.encode(),
        headers={
            "Authorization": f"Bearer {KEY}",
            "X-DashScope-Async": "enable",
            "Content-Type": "application/json",
        },
    )
    assert reply.status_code == 400
    [entry] = mock.client.get("/_paddock/requests").json()["requests"]
    assert "deep-key-2" not in entry["body"]


def test_a_recorded_run_holds_no_secret_from_odd_headers(
    tmp_path: Path, specs: SpecSet, serve: Callable[..., LiveServer]
) -> None:
    key, second = "sk-record-key-4d4d4d", "sk-record-second-5e5e"
    server = serve(timing="fast", api_keys=[key, second])
    spec = specs["dashscope"]
    target = HttpTarget(spec, f"{server.url}/dashscope", key, second, "url")
    record = tmp_path / "dashscope.jsonl"
    body = {
        "model": "happyhorse-1.0-i2v",
        "input": {"prompt": "a cat", "media": [{"type": "first_frame", "url": SIGNED_MEDIA}]},
        "parameters": {"resolution": "720P", "duration": 5},
        "apiKey": "record-body-key-1",
    }
    try:
        with record.open("w", encoding="utf-8") as out:
            target.record_to = out
            target.send(
                "POST",
                spec.operations["create"].path,
                headers={name: value for name, value, _ in ODD_HEADERS} | HARMLESS,
                body=orjson.dumps(body),
            )
        curl = target.redactor.curl(target.exchanges[-1])
    finally:
        target.close()
    written = record.read_text(encoding="utf-8")
    secrets = [s for _, _, s in ODD_HEADERS] + URL_SECRETS + [key, second, "record-body-key-1"]
    assert [s for s in secrets if s in written + curl] == []
    [doc] = [json.loads(line) for line in written.splitlines()]
    shown = doc["request"]["headers"]
    assert shown["X-DashScope-Async"] == "enable"
    assert shown["Authorization"] == "Bearer REDACTED"
    assert "$DASHSCOPE_API_KEY" in curl
    assert doc["response"]["status"] == 200  # nothing the policy hides was needed to answer
