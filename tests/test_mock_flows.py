"""Each provider's documented flow, answered in the documented shapes, on a virtual clock."""

from __future__ import annotations

import io
import re
from typing import Any

import av
import pytest

from mock_server.store import Limits
from tests.conftest import AUTH, KEY, QUERY_PATHS, Mock, png_uri, run

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
UTC8 = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\Z")

# The example requests of the seed pages, as printed there.
SEED_003_DASHSCOPE = {
    "model": "happyhorse-1.0-i2v",
    "input": {
        "prompt": "A cat running on the grass",
        "media": [
            {"type": "first_frame", "url": "https://cdn.translate.alibaba.com/r/wanx-demo-1.png"}
        ],
    },
    "parameters": {"resolution": "720P", "duration": 5},
}
SEED_000_APIYI = {
    "model": "happyhorse-1.0-i2v",
    "input": {
        "prompt": "A cat running across a meadow, bright sunshine, camera following",
        "media": [{"type": "first_frame", "url": "https://your-cdn.com/cat.png"}],
    },
    "parameters": {"resolution": "720P", "duration": 5, "prompt_extend": True, "watermark": True},
}
SEED_001_APIYI = {
    "model": "happyhorse-1.0-r2v",
    "input": {
        "prompt": "Following the reference image, a girl walking slowly through a garden",
        "media": [{"type": "reference_image", "url": "https://your-cdn.com/girl.png"}],
    },
    "parameters": {"resolution": "720P", "duration": 5, "prompt_extend": True, "watermark": True},
}
SEED_002_APIYI = {
    "model": "wan2.7-i2v",
    "input": {
        "prompt": "A spray-painted boy comes to life off the wall and performs an English rap",
        "media": [
            {"type": "first_frame", "url": "https://your-cdn.com/rap.png"},
            {"type": "driving_audio", "url": "https://your-cdn.com/rap.mp3"},
        ],
    },
    "parameters": {"resolution": "720P", "duration": 10, "prompt_extend": True, "watermark": True},
}
SEED_004_ANYFAST = {
    "model": "happyhorse-1.0-i2v",
    "prompt": "Camera slowly zooms in, the scene comes to life",
    "image": "https://example.com/first-frame.png",
    "resolution": "720P",
    "ratio": "16:9",
    "duration": 5,
    "watermark": False,
    "seed": 1073741823,
    "parameters": {},
}


def run_to(mock: Mock, provider: str, task_id: str, seconds: float = 60) -> Any:
    mock.advance(seconds)
    response = mock.query(provider, task_id)
    assert response.status_code == 200, response.text
    return response.json()


# -- DashScope ----------------------------------------------------------------------------------


def test_dashscope_seed_example_walks_every_documented_state(mock: Mock) -> None:
    created = mock.create("dashscope", SEED_003_DASHSCOPE)
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {"output", "request_id"}
    assert body["output"]["task_status"] == "PENDING"
    task_id = body["output"]["task_id"]
    assert UUID.match(task_id)

    pending = mock.query("dashscope", task_id).json()
    assert pending["output"] == {
        "task_id": task_id,
        "task_status": "PENDING",
        "submit_time": pending["output"]["submit_time"],
    }
    assert UTC8.match(pending["output"]["submit_time"])

    task = mock.task(task_id)
    assert task is not None
    mock.advance(task.plan.pending + 0.01)
    running = mock.query("dashscope", task_id).json()["output"]
    assert running["task_status"] == "RUNNING"
    assert UTC8.match(running["scheduled_time"])

    done = run_to(mock, "dashscope", task_id)
    out = done["output"]
    assert out["task_status"] == "SUCCEEDED"
    assert out["orig_prompt"] == "A cat running on the grass"
    assert out["submit_time"] <= out["scheduled_time"] <= out["end_time"]
    assert out["video_url"].startswith("http://testserver/_storage/results/dashscope/")
    assert "Expires=" in out["video_url"] and "Signature=" in out["video_url"]
    assert done["usage"] == {
        "duration": 5,
        "input_video_duration": 0,
        "output_video_duration": 5,
        "video_count": 1,
        "SR": "720",
    }

    # Terminal states are sticky; past the 24 h retention the id answers UNKNOWN.
    assert run_to(mock, "dashscope", task_id, 3600)["output"]["task_status"] == "SUCCEEDED"
    expired = run_to(mock, "dashscope", task_id, 86400)
    assert expired["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}


def test_dashscope_unknown_id_answers_200_unknown(mock: Mock) -> None:
    response = mock.query("dashscope", "0385dc79-5ff8-4d82-bcb6-000000000000")
    assert response.status_code == 200
    assert response.json()["output"] == {
        "task_id": "0385dc79-5ff8-4d82-bcb6-000000000000",
        "task_status": "UNKNOWN",
    }


def test_dashscope_defaults_differ_from_apiyi(mock: Mock) -> None:
    body = {
        "model": "happyhorse-1.0-i2v",
        "input": {"prompt": "x", "media": SEED_003_DASHSCOPE["input"]["media"]},
    }
    ds = mock.task(mock.create("dashscope", body).json()["output"]["task_id"])
    ay = mock.task(mock.create("apiyi", body).json()["output"]["task_id"])
    assert ds is not None and ay is not None
    assert (ds.request.parameters["resolution"], ds.request.parameters["watermark"]) == (
        "1080P",
        True,
    )
    assert (ay.request.parameters["resolution"], ay.request.parameters["watermark"]) == (
        "720P",
        False,
    )
    assert ds.output.sr == 1080 and ay.output.sr == 720


def test_failed_task_carries_catalogue_code_and_message(mock: Mock) -> None:
    created = mock.create(
        "dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "fail=InvalidParameter"}
    )
    done = run_to(mock, "dashscope", created.json()["output"]["task_id"])
    assert done["output"]["task_status"] == "FAILED"
    assert done["output"]["code"] == "InvalidParameter"
    assert (
        done["output"]["message"] == mock.state.specs["dashscope"].error("InvalidParameter").message
    )
    assert "usage" not in done and "video_url" not in done["output"]


# -- APIYI --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "example", [SEED_000_APIYI, SEED_001_APIYI, SEED_002_APIYI], ids=["i2v", "r2v", "wan2.7-i2v"]
)
def test_apiyi_seed_examples(mock: Mock, example: dict[str, Any]) -> None:
    created = mock.create("apiyi", example)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["output"]["task_status"] == "PENDING"  # DashScope's own create reply
    task_id = body["output"]["task_id"]
    if example["model"].startswith("happyhorse"):
        assert task_id.startswith("hh-")
    else:
        assert UUID.match(task_id)

    queued = mock.query("apiyi", task_id).json()
    assert queued == {"task_id": task_id, "status": "submitted", "progress": 0}
    done = run_to(mock, "apiyi", task_id)
    assert set(done) == {"task_id", "status", "progress", "result_url"}
    assert (done["status"], done["progress"]) == ("completed", 100)


def test_apiyi_progress_only_reports_documented_steps(mock: Mock) -> None:
    task_id = mock.create("apiyi", SEED_000_APIYI).json()["output"]["task_id"]
    seen = []
    for _ in range(60):
        body = mock.query("apiyi", task_id).json()
        seen.append((body["status"], body["progress"]))
        mock.advance(0.2)
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    assert set(progress) <= {0, 10, 30, 100}
    assert {s for s, _ in seen} == {"submitted", "in_progress", "completed"}


def test_apiyi_failure_has_bracketed_upstream_code(mock: Mock) -> None:
    created = mock.create(
        "apiyi", SEED_000_APIYI, **{"X-Paddock-Scenario": "fail=DataInspectionFailed"}
    )
    done = run_to(mock, "apiyi", created.json()["output"]["task_id"])
    assert done["status"] == "failed"
    assert done["fail_reason"].startswith("[DataInspectionFailed] ")
    assert done["error"]["message"] == done["fail_reason"]


def test_apiyi_unknown_task_and_result_download_rules(mock: Mock) -> None:
    unknown = mock.query("apiyi", "hh-nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "task_not_exist"

    task_id = mock.create("apiyi", SEED_000_APIYI).json()["output"]["task_id"]
    url = run_to(mock, "apiyi", task_id)["result_url"]
    # APIYI's object storage refuses a signed link that also carries Authorization.
    refused = mock.client.get(url, headers=AUTH)
    assert refused.status_code == 403
    assert b"SignatureDoesNotMatch" in refused.content
    assert mock.client.get(url).status_code == 200


# -- AnyFast ------------------------------------------------------------------------------------


def test_anyfast_seed_example_and_envelope(mock: Mock) -> None:
    created = mock.create("anyfast", SEED_004_ANYFAST)
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"id", "task_id", "object", "model", "status", "progress", "created_at"}
    assert (body["object"], body["model"], body["status"], body["progress"]) == (
        "video",
        "happyhorse-1.0-i2v",
        "queued",
        0,
    )
    assert re.fullmatch(r"asyntask_[A-Za-z0-9]{32}", body["id"]) and body["id"] == body["task_id"]
    assert isinstance(body["created_at"], int)

    queued = mock.query("anyfast", body["id"]).json()
    assert (queued["code"], queued["message"]) == ("success", "")
    assert (queued["data"]["status"], queued["data"]["progress"]) == ("QUEUED", "0%")

    task = mock.task(body["id"])
    assert task is not None
    mock.advance(task.plan.pending + 0.01)
    running = mock.query("anyfast", body["id"]).json()["data"]
    assert (running["status"], running["progress"]) == ("IN_PROGRESS", "50%")

    done = run_to(mock, "anyfast", body["id"])["data"]
    assert (done["status"], done["progress"], done["action"]) == ("SUCCESS", "100%", "generate")
    assert done["fail_reason"] == done["result_url"]  # the documented oddity
    assert done["submit_time"] <= done["start_time"] <= done["finish_time"]
    upstream = done["data"]
    assert upstream["output"]["task_status"] == "SUCCEEDED"
    assert upstream["output"]["video_url"] == done["result_url"]
    assert upstream["usage"] == {
        "SR": 720,
        "duration": 5,
        "input_video_duration": 0,
        "output_video_duration": 5,
        "ratio": "16:9",
        "video_count": 1,
    }


def test_anyfast_parameters_flat_or_nested(mock: Mock) -> None:
    nested = {
        "model": "happyhorse-1.0-t2v",
        "prompt": "waves",
        "parameters": {"duration": 8, "ratio": "9:16"},
    }
    task = mock.task(mock.create("anyfast", nested).json()["id"])
    assert task is not None
    assert (task.request.parameters["duration"], task.request.parameters["ratio"]) == (8, "9:16")
    assert task.output.width < task.output.height  # 9:16 shapes the frame

    both = {
        "model": "happyhorse-1.0-t2v",
        "prompt": "waves",
        "duration": 4,
        "parameters": {"duration": 8},
    }
    task = mock.task(mock.create("anyfast", both).json()["id"])
    assert task is not None and task.request.parameters["duration"] == 4  # top level wins


def test_anyfast_images_array_first_used_and_r2v_limits(mock: Mock) -> None:
    many = {
        "model": "happyhorse-1.0-i2v",
        "prompt": "x",
        "images": ["https://a.example/1.png", "https://a.example/2.png"],
    }
    task = mock.task(mock.create("anyfast", many).json()["id"])
    assert task is not None and [m.url for m in task.request.media] == ["https://a.example/1.png"]

    r2v = {
        "model": "happyhorse-1.0-r2v",
        "prompt": "x",
        "images": [f"https://a.example/{i}.png" for i in range(3)],
    }
    assert mock.create("anyfast", r2v).status_code == 200
    r2v["images"].append("https://a.example/4.png")
    too_many = mock.create("anyfast", r2v)
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "invalid_request"


def test_anyfast_unknown_task(mock: Mock) -> None:
    response = mock.query("anyfast", "asyntask_doesnotexist")
    assert response.status_code == 404
    assert response.json() == {"code": "task_not_exist", "message": "task_not_exist", "data": None}


# -- results ------------------------------------------------------------------------------------


def test_result_is_a_real_mp4_following_the_first_frame(mock: Mock) -> None:
    body = {
        "model": "happyhorse-1.0-i2v",
        "input": {"prompt": "x", "media": [{"type": "first_frame", "url": png_uri(400, 600)}]},
        "parameters": {"resolution": "720P", "duration": 3},
    }
    task_id = mock.create("dashscope", body).json()["output"]["task_id"]
    url = run_to(mock, "dashscope", task_id)["output"]["video_url"]
    video = mock.client.get(url)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 24
        assert stream.frames == 72
        # 400x600 (0.667) snaps to the nearest named ratio, 3:4, and its 720P table row.
        assert (stream.width, stream.height) == (832, 1104)

    # Resumable: a range request gets the tail.
    tail = mock.client.get(url, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206
    assert tail.content == video.content[100:]


def test_result_url_expires_with_retention(mock: Mock) -> None:
    task_id = mock.create("dashscope", SEED_003_DASHSCOPE).json()["output"]["task_id"]
    url = run_to(mock, "dashscope", task_id)["output"]["video_url"]
    mock.advance(86400 + 120)
    expired = mock.client.get(url)
    assert expired.status_code == 403
    assert b"Request has expired" in expired.content
    forged = url.replace("Signature=", "Signature=x")
    assert mock.client.get(forged).status_code == 403


# -- scenarios ----------------------------------------------------------------------------------


def test_scenarios_stuck_flaky_throttle_reject_slow(mock: Mock) -> None:
    stuck = mock.create("dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "stuck"}).json()[
        "output"
    ]["task_id"]
    assert run_to(mock, "dashscope", stuck, 10_000)["output"]["task_status"] == "RUNNING"

    flaky = mock.create("dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "flaky"}).json()[
        "output"
    ]["task_id"]
    first = mock.query("dashscope", flaky)
    assert (first.status_code, first.json()["code"]) == (500, "InternalError")
    assert mock.query("dashscope", flaky).status_code == 200

    throttled = mock.create("dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "throttle"})
    assert (throttled.status_code, throttled.json()["code"]) == (429, "Throttling.RateQuota")
    assert throttled.headers["retry-after"] == "1"

    rejected = mock.create(
        "dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "reject=Arrearage"}
    )
    assert (rejected.status_code, rejected.json()["code"]) == (400, "Arrearage")

    slow = mock.create(
        "dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "slow=100"}
    ).json()["output"]["task_id"]
    assert run_to(mock, "dashscope", slow, 30)["output"]["task_status"] != "SUCCEEDED"


def test_unknown_scenario_is_a_clear_4xx(mock: Mock) -> None:
    response = mock.create("anyfast", SEED_004_ANYFAST, **{"X-Paddock-Scenario": "explode"})
    assert response.status_code == 400
    assert "unknown scenario item 'explode'" in response.json()["message"]
    response = mock.create(
        "dashscope", SEED_003_DASHSCOPE, **{"X-Paddock-Scenario": "fail=NoSuchCode"}
    )
    assert response.status_code == 400 and "no error 'NoSuchCode'" in response.json()["message"]


def test_timing_instant_finishes_at_first_poll(make_mock: Any) -> None:
    mock = make_mock(timing="instant")
    created = mock.create("anyfast", SEED_004_ANYFAST).json()
    assert created["status"] == "queued"
    assert mock.query("anyfast", created["id"]).json()["data"]["status"] == "SUCCESS"


# -- admin --------------------------------------------------------------------------------------


def test_admin_journal_is_redacted_and_bounded_in_bytes(make_mock: Any) -> None:
    mock = make_mock(limits=Limits(journal_bytes=6 * 1024))
    for _ in range(8):
        mock.create(
            "dashscope",
            {
                **SEED_003_DASHSCOPE,
                "input": {
                    **SEED_003_DASHSCOPE["input"],
                    "media": [{"type": "first_frame", "url": png_uri()}],
                },
            },
        )
    journal = mock.client.get("/_paddock/requests").json()["requests"]
    # Each entry here is about a kilobyte and a half: the newest few fit, the rest went.
    assert 2 <= len(journal) < 8
    assert [e["seq"] for e in journal] == list(range(8, 8 - len(journal), -1))
    assert run(mock.state.store.journal_size())[1] <= 6 * 1024
    text = str(journal)
    assert KEY not in text
    assert journal[0]["headers"]["authorization"] == "Bearer <redacted>"
    assert journal[0]["marks"]["media"][0]["origin"] == "data"
    assert "chars elided" in journal[0]["body"]


def test_admin_tasks_clock_reset_and_hosted_media(mock: Mock) -> None:
    hosted = mock.client.post(
        "/_paddock/media", content=open_png(), headers={"Content-Type": "image/png"}
    )
    assert hosted.status_code == 201
    url = hosted.json()["url"]
    assert hosted.json()["info"]["width"] == 720
    assert mock.client.get(url).content == open_png()

    body = {
        "model": "happyhorse-1.0-i2v",
        "input": {"prompt": "x", "media": [{"type": "first_frame", "url": url}]},
    }
    task_id = mock.create("dashscope", body).json()["output"]["task_id"]
    [listed] = mock.client.get("/_paddock/tasks").json()["tasks"]
    assert (listed["id"], listed["state"], listed["media"][0]["origin"]) == (
        task_id,
        "PENDING",
        "hosted",
    )
    assert KEY not in str(listed)

    now = mock.client.post("/_paddock/clock/advance", json={"seconds": 3600}).json()["now"]
    assert now > listed["created_at"] + 3599
    assert mock.client.get("/_paddock/tasks").json()["tasks"][0]["state"] == "SUCCEEDED"
    assert mock.client.post("/_paddock/clock/advance", json={"seconds": -1}).status_code == 400
    assert mock.client.post("/_paddock/clock/advance", content=b"soon").status_code == 400

    assert mock.client.post("/_paddock/reset").status_code == 200
    assert mock.client.get("/_paddock/tasks").json()["tasks"] == []
    assert mock.query("dashscope", task_id).json()["output"]["task_status"] == "UNKNOWN"


def test_admin_is_never_a_provider_route(mock: Mock) -> None:
    assert mock.client.get("/dashscope/_paddock/tasks", headers=AUTH).json()["code"] == "NotFound"
    assert mock.client.get("/_paddock/nope").status_code == 404


def test_root_provider_serves_real_paths_at_root(make_mock: Any) -> None:
    mock = make_mock(root_provider="anyfast")
    created = mock.client.post("/v1/video/generations", json=SEED_004_ANYFAST, headers=AUTH)
    assert created.status_code == 200
    task_id = created.json()["id"]
    assert (
        mock.client.get(f"/v1/video/generations/{task_id}", headers=AUTH).json()["data"]["task_id"]
        == task_id
    )
    # The prefixed path still answers too, with the same store.
    assert mock.client.get(QUERY_PATHS["anyfast"].format(task_id), headers=AUTH).status_code == 200


def open_png() -> bytes:
    from tests.conftest import image_bytes

    return image_bytes(720, 480)


def test_journal_lists_fields_the_service_ignored(mock: Mock) -> None:
    body = {
        **SEED_003_DASHSCOPE,
        "input": {**SEED_003_DASHSCOPE["input"], "negative_promt": "x"},
        "parameters": {"duration": 5, "fps": 30},
        "stream": True,
    }
    assert mock.create("dashscope", body).status_code == 200
    marks = mock.client.get("/_paddock/requests?limit=1").json()["requests"][0]["marks"]
    assert sorted(marks["ignored"]) == ["input.negative_promt", "parameters.fps", "stream"]
    # What the official SDK always adds is expected, not ignored.
    sdk_body = {
        **SEED_003_DASHSCOPE,
        "input": {
            **SEED_003_DASHSCOPE["input"],
            "extend_prompt": True,
            "function": "video-synthesis",
        },
    }
    mock.create("dashscope", sdk_body)
    assert (
        "ignored"
        not in mock.client.get("/_paddock/requests?limit=1").json()["requests"][0]["marks"]
    )


def test_keys_in_any_credential_header_are_redacted(mock: Mock) -> None:
    mock.create(
        "dashscope",
        SEED_003_DASHSCOPE,
        **{"X-DashScope-ApiKey": "sk-secret-1", "Authorization": "sk-secret-2 x"},
    )
    entry = mock.client.get("/_paddock/requests?limit=1").json()["requests"][0]
    assert "sk-secret" not in str(entry)
    assert entry["headers"]["authorization"] == "<redacted>"


def test_result_link_outlives_the_task_id_as_object_storage_would(make_mock: Any) -> None:
    mock = make_mock(timing="realistic")
    task_id = mock.create("dashscope", SEED_003_DASHSCOPE).json()["output"]["task_id"]
    url = run_to(mock, "dashscope", task_id, 3600)["output"]["video_url"]
    mock.advance(86400 - 3600 + 1)  # the task id has expired ...
    assert mock.query("dashscope", task_id).json()["output"]["task_status"] == "UNKNOWN"
    assert mock.client.get(url).status_code == 200  # ... its link has not


def test_uploads_refuse_overwrite_and_malformed_ranges_are_ignored(mock: Mock) -> None:
    task_id = mock.create("dashscope", SEED_003_DASHSCOPE).json()["output"]["task_id"]
    url = run_to(mock, "dashscope", task_id)["output"]["video_url"]
    whole = mock.client.get(url)
    assert mock.client.get(url, headers={"Range": "bytes=abc"}).content == whole.content
    assert (
        mock.client.get(url, headers={"Range": f"bytes={len(whole.content)}-"}).status_code == 416
    )


def test_wan27_takes_a_first_clip_instead_of_a_first_frame(mock: Mock) -> None:
    from mock_server.videos import render_mp4
    from tests.conftest import data_uri

    clip = data_uri(render_mp4(320, 240, 2), "video/mp4")
    body = {
        "model": "wan2.7-i2v",
        "input": {"prompt": "go on", "media": [{"type": "first_clip", "url": clip}]},
    }
    assert mock.create("dashscope", body).status_code == 200
    neither = {"model": "wan2.7-i2v", "input": {"prompt": "go on", "media": []}}
    response = mock.create("dashscope", neither)
    assert response.status_code == 400 and "first_frame or first_clip" in response.json()["message"]


def test_apiyi_negative_prompt_limit(mock: Mock) -> None:
    long = {**SEED_000_APIYI, "input": {**SEED_000_APIYI["input"], "negative_prompt": "n" * 501}}
    response = mock.create("apiyi", long)
    assert response.status_code == 400 and "limit is 500" in response.json()["error"]["message"]
    ok = {**SEED_000_APIYI, "input": {**SEED_000_APIYI["input"], "negative_prompt": "blur"}}
    assert mock.create("apiyi", ok).status_code == 200
