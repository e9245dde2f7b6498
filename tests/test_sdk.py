"""The official ``dashscope`` SDK, unmodified, against the mock over a real socket."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import httpx
import pytest

from tests.conftest import KEY, LiveServer, image_bytes, stored_tasks

dashscope = pytest.importorskip("dashscope")
from dashscope import VideoSynthesis  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture
def sdk_server(
    serve: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    server = serve(timing="instant")
    # What a user does: point the SDK at the mock (the env var is read at
    # import, so a running program sets the module attribute instead).
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/dashscope/api/v1")
    monkeypatch.setattr(dashscope, "api_key", KEY)
    yield server


def test_sdk_round_trip_with_local_file_upload(sdk_server: LiveServer, tmp_path: Path) -> None:
    image = tmp_path / "first frame.png"
    image.write_bytes(image_bytes(900, 600))

    created = VideoSynthesis.async_call(
        model="happyhorse-1.0-i2v",
        prompt="A cat running on the grass",
        media=[{"type": "first_frame", "url": f"file://{image}"}],
        resolution="720P",
        duration=3,
    )
    assert created.status_code == 200, created
    assert created.output.task_status == "PENDING"

    done = VideoSynthesis.wait(created)
    assert done.status_code == 200
    assert done.output.task_status == "SUCCEEDED"
    assert done.usage.duration == 3

    # The uploaded file was probed for real: its 3:2 aspect snaps to the nearest named
    # ratio, 4:3, not the 16:9 a model falls back to.
    video = httpx.get(done.output.video_url)
    assert video.status_code == 200
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 24
        assert (stream.width, stream.height) == (1104, 832)
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.05)
    [task] = stored_tasks(sdk_server.state)
    assert task.request.media[0].origin == "upload"
    assert task.request.media[0].info is not None
    assert (task.request.media[0].info.width, task.request.media[0].info.height) == (900, 600)


def test_sdk_fetch_cancel_and_list(
    serve: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(timing="realistic")
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/dashscope/api/v1")
    media = [{"type": "first_frame", "url": "https://cdn.example.com/cat.png"}]

    first = VideoSynthesis.async_call(
        model="happyhorse-1.0-i2v", prompt="one", media=media, api_key=KEY
    )
    second = VideoSynthesis.async_call(
        model="happyhorse-1.0-i2v", prompt="two", media=media, api_key=KEY
    )
    assert VideoSynthesis.fetch(first, api_key=KEY).output.task_status == "PENDING"

    canceled = VideoSynthesis.cancel(first, api_key=KEY)
    assert canceled.status_code == 200
    assert VideoSynthesis.fetch(first, api_key=KEY).output.task_status == "CANCELED"
    again = VideoSynthesis.cancel(first, api_key=KEY)
    assert (again.status_code, again.code) == (400, "UnsupportedOperation")

    listed = VideoSynthesis.list(page_size=10, api_key=KEY)
    assert listed.status_code == 200
    rows = {row["task_id"]: row["status"] for row in listed.output["data"]}
    assert rows == {first.output.task_id: "CANCELED", second.output.task_id: "PENDING"}
    only_canceled = VideoSynthesis.list(status="CANCELED", api_key=KEY)
    assert [r["task_id"] for r in only_canceled.output["data"]] == [first.output.task_id]

    # Another key sees none of it.
    assert VideoSynthesis.list(api_key="sk-someone-else").output["total"] == 0
    assert VideoSynthesis.fetch(first, api_key="sk-someone-else").output.task_status == "UNKNOWN"


def test_sdk_sees_provider_errors(sdk_server: LiveServer) -> None:
    unknown = VideoSynthesis.async_call(model="happyhorse-9-i2v", prompt="x")
    assert (unknown.status_code, unknown.code) == (404, "ModelNotFound")

    out_of_range = VideoSynthesis.async_call(
        model="happyhorse-1.0-i2v",
        prompt="x",
        duration=20,
        media=[{"type": "first_frame", "url": "https://cdn.example.com/cat.png"}],
    )
    assert (out_of_range.status_code, out_of_range.code) == (400, "InvalidParameter")
    assert "duration" in out_of_range.message

    no_key = VideoSynthesis.async_call(model="happyhorse-1.0-i2v", prompt="x", api_key=" ")
    assert no_key.status_code == 401
    assert no_key.code == "InvalidApiKey"


def test_sdk_fault_injection_through_the_prompt(sdk_server: LiveServer) -> None:
    failed = VideoSynthesis.call(
        model="happyhorse-1.0-i2v",
        prompt="a storm #paddock:fail=DataInspectionFailed",
        media=[{"type": "first_frame", "url": "https://cdn.example.com/cat.png"}],
    )
    assert failed.output.task_status == "FAILED"
    assert failed.output.code == "DataInspectionFailed"
    assert failed.output.message == "Input or output data may contain inappropriate content."
