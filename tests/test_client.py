"""The reference client against the mock: round trips, typed errors, retries, downloads."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from contracts.client import AsyncClient, Client, Task
from contracts.errors import (
    DownloadError,
    LocalValidationError,
    PaddockError,
    ProviderError,
    PublicURLRequired,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    UnexpectedResponse,
    UnsupportedOperation,
    UpstreamUnavailable,
    WaitTimeout,
    error_for_category,
)
from contracts.spec import Spec, SpecSet, builtin_specs_dir, load_specs
from mock_server.app import MockState, create_app
from mock_server.clock import Clock
from tests.conftest import (
    KEY,
    LiveServer,
    SyncASGITransport,
    image_bytes,
    open_video,
    png_uri,
    run,
    stored_task,
    wav_bytes,
)

REMOTE = "https://cdn.example.com/frame.png"
MODELS = {
    "dashscope": ("happyhorse-1.0-i2v", {"first_frame": REMOTE}),
    "apiyi": ("wan2.7-i2v", {"first_frame": REMOTE}),
    "anyfast": ("happyhorse-1.0-r2v", {"reference_image": [REMOTE, REMOTE]}),
}


class Sleeps:
    """Records sleeps and moves the mock's clock instead of waiting."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def app() -> Starlette:
    return create_app(clock=Clock(speed=0), timing="fast")


def state(app: Starlette) -> MockState:
    result: MockState = app.state.paddock
    return result


@pytest.fixture
def client_for(app: Starlette) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []
    transports: list[SyncASGITransport] = []

    def make(provider: str, **options: Any) -> Client:
        sleeps = Sleeps(state(app).clock)
        options.setdefault("api_key", KEY)
        transport = SyncASGITransport(app)
        transports.append(transport)
        client = Client(
            provider,
            base_url=f"http://mock/{provider}",
            transport=transport,
            sleep=sleeps,
            monotonic=state(app).clock.now,
            **options,
        )
        client.sleeps = sleeps  # type: ignore[attr-defined]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    for transport in transports:
        transport.close()


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_round_trip_to_a_playable_mp4(
    client_for: Callable[..., Client], provider: str, tmp_path: Path
) -> None:
    client = client_for(provider)
    model, media = MODELS[provider]
    updates: list[tuple[str, int | None]] = []
    # slow=20 stretches generation past the documented polling pace, so RUNNING is seen.
    task = client.submit(
        model,
        prompt="a calm lake",
        media=media,
        duration=4,
        headers={"X-Paddock-Scenario": "slow=20"},
    )
    assert task.state == "PENDING" and task.provider == provider
    done = client.wait(task.id, on_update=lambda t: updates.append((t.state, t.progress)))
    assert done.succeeded and done.result_url
    assert [s for s, _ in updates][-1] == "SUCCEEDED"
    assert "RUNNING" in [s for s, _ in updates]
    path = client.download(done, tmp_path / "out.mp4")
    duration, _, _, fps = open_video(path)
    assert duration == pytest.approx(4.0, abs=0.05) and fps == 24
    # Polled at the spec's pace: never faster than its initial interval (less jitter).
    spec = client.spec
    assert min(client.sleeps.calls) >= spec.poll_initial * 0.8  # type: ignore[attr-defined]


def test_round_trip_over_a_real_socket(serve: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = serve(timing="instant")
    with Client("anyfast", base_url=f"{server.url}/anyfast", api_key=KEY) as client:
        task = client.submit("happyhorse-1.0-t2v", prompt="waves", duration=3, ratio="9:16")
        done = client.wait(task.id)
        path = client.download(done, tmp_path / "waves.mp4")
    duration, width, height, _ = open_video(path)
    assert duration == pytest.approx(3.0, abs=0.05) and width < height


def test_dashscope_local_file_goes_through_the_upload_flow(
    client_for: Callable[..., Client], app: Starlette, tmp_path: Path
) -> None:
    image = tmp_path / "portrait.png"
    image.write_bytes(image_bytes(600, 900))
    client = client_for("dashscope")
    task = client.submit("happyhorse-1.0-i2v", media={"first_frame": str(image)}, resolution="720P")
    record = stored_task(state(app), task.id)
    assert record is not None
    assert record.request.media[0].origin == "upload"
    assert record.request.media[0].url.startswith("oss://")
    assert record.output.width < record.output.height  # the portrait's aspect reached the mock


class Recording(httpx.BaseTransport):
    """Passes requests on to the in-process mock and keeps each, body read."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)


def edited_dashscope(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Spec:
    folder = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), folder)
    path = folder / "dashscope.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_specs(folder)["dashscope"]


def test_the_upload_form_is_the_specs(app: Starlette, tmp_path: Path) -> None:
    """A field added to ``uploads.form`` in the YAML is posted; none is written in Python."""

    def add_field(doc: dict[str, Any]) -> None:
        doc["uploads"]["form"]["fields"]["x-oss-meta-origin"] = "{upload.dir}:{file.name}"

    spec = edited_dashscope(tmp_path, add_field)
    image = tmp_path / "frame.png"
    image.write_bytes(image_bytes(640, 360))
    recording = Recording(SyncASGITransport(app))
    base = "http://mock/dashscope"
    with Client(spec, base_url=base, api_key=KEY, transport=recording) as client:
        task = client.submit("happyhorse-1.0-i2v", media={"first_frame": str(image)})
    assert task.state == "PENDING"
    policy, stored, _ = recording.requests
    assert dict(policy.url.params) == {"action": "getPolicy", "model": "happyhorse-1.0-i2v"}
    form = stored.content.decode("latin-1")
    assert 'name="x-oss-meta-origin"' in form and ":frame.png\r\n" in form
    assert 'name="file"; filename="frame.png"' in form
    assert "authorization" not in stored.headers  # the signed policy is the storage credential


def test_an_upload_policy_lacking_what_the_form_needs_stops_before_any_post(
    app: Starlette, tmp_path: Path
) -> None:
    def need_more(doc: dict[str, Any]) -> None:
        doc["uploads"]["form"]["fields"]["x-oss-security-token"] = "{upload.token}"

    spec = edited_dashscope(tmp_path, need_more)
    image = tmp_path / "frame.png"
    image.write_bytes(image_bytes(640, 360))
    recording = Recording(SyncASGITransport(app))
    client = Client(spec, base_url="http://mock/dashscope", api_key=KEY, transport=recording)
    with client, pytest.raises(UnexpectedResponse, match=r"lacks .*\{upload\.token\}"):
        client.submit("happyhorse-1.0-i2v", media={"first_frame": str(image)})
    # The policy request only: no upload, no create.
    assert [r.method for r in recording.requests] == ["GET"]


def test_public_url_providers_refuse_local_files_before_sending(
    client_for: Callable[..., Client], app: Starlette, tmp_path: Path
) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(image_bytes())
    for provider in ("apiyi", "anyfast"):
        client = client_for(provider)
        with pytest.raises(PublicURLRequired, match="public URL"):
            client.submit("happyhorse-1.0-i2v", prompt="x", media={"first_frame": str(image)})
    assert run(state(app).store.journal_size())[0] == 0


@pytest.mark.parametrize(
    ("provider", "kwargs", "rule"),
    [
        ("dashscope", {"duration": 20}, "param_range"),
        ("apiyi", {"duration": 1}, "param_range"),
        ("anyfast", {"ratio": "2:1"}, "param_enum"),
        ("dashscope", {"ratio": "16:9"}, "param_unsupported"),
    ],
)
def test_local_validation_names_the_rule_and_sends_nothing(
    client_for: Callable[..., Client],
    app: Starlette,
    provider: str,
    kwargs: dict[str, Any],
    rule: str,
) -> None:
    client = client_for(provider)
    with pytest.raises(LocalValidationError) as caught:
        client.submit("happyhorse-1.0-i2v", prompt="x", media={"first_frame": REMOTE}, **kwargs)
    assert caught.value.rule == rule
    assert caught.value.source
    assert run(state(app).store.journal_size())[0] == 0


def test_a_header_that_would_smuggle_another_is_refused_and_nothing_sent(
    client_for: Callable[..., Client], app: Starlette
) -> None:
    client = client_for("dashscope")
    with pytest.raises(PaddockError, match="line break"):
        client.submit("happyhorse-1.0-t2v", prompt="x", headers={"X-A": "1\r\nX-B: 2"})
    assert run(state(app).store.journal_size())[0] == 0
    for bad in ("ftp://127.0.0.1/dashscope", "127.0.0.1:8000/dashscope", "http://h:99999/x"):
        with pytest.raises(PaddockError, match="base URL"):
            Client("dashscope", base_url=bad, api_key="sk-test")
    with pytest.raises(PaddockError, match="line break") as caught:
        Client("dashscope", base_url="http://127.0.0.1:1/dashscope", api_key="sk-a\nX-B: 2")
    assert "sk-a" not in str(caught.value)


def test_local_media_is_probed_before_sending(
    client_for: Callable[..., Client], tmp_path: Path
) -> None:
    client = client_for("dashscope")
    with pytest.raises(LocalValidationError, match="at least 300 pixels"):
        client.submit("happyhorse-1.0-i2v", media={"first_frame": png_uri(200, 200)})
    with pytest.raises(LocalValidationError, match="no such file"):
        client.submit("happyhorse-1.0-i2v", media={"first_frame": str(tmp_path / "missing.png")})


def catalogue(specs: SpecSet) -> list[tuple[str, str, str]]:
    return [(s.provider, key, e.category) for s in specs for key, e in s.errors.items()]


def test_every_catalogue_error_raises_its_class(
    client_for: Callable[..., Client], specs: SpecSet
) -> None:
    for provider, key, category in catalogue(specs):
        client = client_for(provider)
        model, media = MODELS[provider]
        with pytest.raises(ProviderError) as caught:
            client.submit(
                model, prompt="x", media=media, headers={"X-Paddock-Scenario": f"reject={key}"}
            )
        error = caught.value
        assert type(error) is error_for_category(category), (provider, key)
        assert error.code == specs[provider].error(key).code
        assert error.status == specs[provider].error(key).status
        assert KEY not in str(error) and KEY not in repr(error.raw)


def test_failed_expired_and_unknown_tasks(
    client_for: Callable[..., Client], app: Starlette
) -> None:
    client = client_for("dashscope")
    model, media = MODELS["dashscope"]
    failed = client.submit(
        model, media=media, headers={"X-Paddock-Scenario": "fail=DataInspectionFailed"}
    )
    with pytest.raises(TaskFailed) as caught:
        client.wait(failed.id)
    assert caught.value.code == "DataInspectionFailed"
    assert client.wait(failed.id, raise_on_failure=False).state == "FAILED"

    state(app).clock.advance(86400)
    with pytest.raises(TaskExpired):
        client.wait(failed.id)
    with pytest.raises(TaskNotFound):
        client_for("apiyi").get("hh-never-existed")


def test_wait_times_out_on_a_stuck_task(client_for: Callable[..., Client]) -> None:
    client = client_for("anyfast")
    model, media = MODELS["anyfast"]
    task = client.submit(model, prompt="x", media=media, headers={"X-Paddock-Scenario": "stuck"})
    with pytest.raises(WaitTimeout) as caught:
        client.wait(task.id, timeout=120)
    assert caught.value.task.state == "RUNNING"


def test_polls_retry_5xx_and_honour_retry_after(app: Starlette) -> None:
    asgi = httpx.ASGITransport(app=app)
    throttled: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and not throttled:
            throttled.append(str(request.url))
            return httpx.Response(
                429, headers={"Retry-After": "7"}, json={"code": "Throttling", "message": "slow"}
            )
        return await asgi.handle_async_request(request)

    async def run() -> tuple[Task, list[float]]:
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        async with AsyncClient(
            "dashscope",
            base_url="http://mock/dashscope",
            api_key=KEY,
            transport=httpx.MockTransport(handler),
            poll_interval=0.01,
            sleep=fake_sleep,
        ) as client:
            model, media = MODELS["dashscope"]
            task = await client.submit(model, media=media, headers={"X-Paddock-Scenario": "flaky"})
            state(app).clock.advance(60)
            return await client.wait(task.id), sleeps

    done, sleeps = asyncio.run(run())
    assert done.succeeded
    assert throttled  # a 429 was served ...
    assert any(s >= 7 * 0.8 for s in sleeps)  # ... and its Retry-After honoured
    # and the flaky task's one 500 was retried rather than raised.


def test_create_is_never_retried() -> None:
    creates: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        creates.append(1)
        return httpx.Response(503, json={"code": "ModelUnavailable", "message": "busy"})

    client = Client(
        "dashscope",
        base_url="http://mock/dashscope",
        api_key=KEY,
        transport=httpx.MockTransport(handler),
    )
    with client, pytest.raises(UpstreamUnavailable, match="ModelUnavailable"):
        client.submit(MODELS["dashscope"][0], media=MODELS["dashscope"][1])
    assert creates == [1]  # a 503 on create is raised, never retried into a second paid task


def test_expired_links_are_renewed_where_the_provider_reissues(
    client_for: Callable[..., Client], app: Starlette, tmp_path: Path
) -> None:
    for provider, renews in (("apiyi", True), ("dashscope", False)):
        client = client_for(provider)
        model, media = MODELS[provider]
        done = client.wait(client.submit(model, prompt="x", media=media).id)
        state(app).clock.advance(23 * 3600)
        if renews:
            assert client.download(done, tmp_path / f"{provider}.mp4").exists()
        else:
            state(app).clock.advance(2 * 3600)
            with pytest.raises(DownloadError, match="gave no new one"):
                client.download(done, tmp_path / f"{provider}.mp4")


def test_download_resumes_after_a_cut(
    client_for: Callable[..., Client], app: Starlette, tmp_path: Path
) -> None:
    client = client_for("anyfast")
    model, media = MODELS["anyfast"]
    done = client.wait(client.submit(model, prompt="x", media=media).id)
    whole = httpx.Client(transport=SyncASGITransport(app)).get(done.result_url or "").content
    part = tmp_path / "cut.mp4.part"
    part.write_bytes(whole[:1000])  # what an interrupted download left behind
    path = client.download(done, tmp_path / "cut.mp4")
    assert path.read_bytes() == whole
    journal = run(state(app).journal.entries(limit=50))
    assert not any(
        "authorization" in e["headers"] for e in journal if e["path"].startswith("/_storage")
    )


def test_cancel_list_and_unsupported_operations(client_for: Callable[..., Client]) -> None:
    client = client_for("dashscope")
    model, media = MODELS["dashscope"]
    task = client.submit(model, media=media)
    client.cancel(task.id)
    assert client.get(task.id).state == "CANCELED"
    assert [t.id for t in client.list(status="CANCELED")] == [task.id]
    with pytest.raises(UnsupportedOperation, match="anyfast has no cancel"):
        client_for("anyfast").cancel("asyntask_x")


def test_keys_stay_out_of_reprs_and_errors(
    client_for: Callable[..., Client], monkeypatch: Any
) -> None:
    client = client_for("apiyi")
    assert KEY not in repr(client) and "key=set" in repr(client)
    monkeypatch.delenv("ANYFAST_API_KEY", raising=False)
    keyless = Client("anyfast", api_key=None)
    with pytest.raises(PaddockError, match="set ANYFAST_API_KEY"):
        keyless.submit("happyhorse-1.0-t2v", prompt="x")


def test_the_async_client_drives_many_tasks_at_once() -> None:
    app = create_app(timing="instant")

    async def run() -> list[Task]:
        async with AsyncClient(
            "dashscope",
            base_url="http://mock/dashscope",
            api_key=KEY,
            transport=httpx.ASGITransport(app=app),
            poll_interval=0.01,
        ) as client:

            async def one(i: int) -> Task:
                task = await client.submit("happyhorse-1.0-t2v", prompt=f"scene {i}", duration=3)
                return await client.wait(task.id)

            return await asyncio.gather(*(one(i) for i in range(200)))

    done = asyncio.run(run())
    assert len({t.id for t in done}) == 200
    assert all(t.succeeded for t in done)


def test_media_inputs_accept_data_uris_and_audio(
    client_for: Callable[..., Client], app: Starlette
) -> None:
    client = client_for("apiyi")
    audio = "data:audio/wav;base64," + __import__("base64").b64encode(wav_bytes(3)).decode()
    task = client.submit(
        "wan2.7-i2v", prompt="rap", media=[("first_frame", png_uri()), ("driving_audio", audio)]
    )
    record = stored_task(state(app), task.id)
    assert record is not None and [m.origin for m in record.request.media] == ["data", "data"]
