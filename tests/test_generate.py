"""``paddock generate`` makes a playable MP4 for every model of every spec, on a served mock."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import httpx
import pytest

from contracts.spec import SpecSet, load_specs
from paddock.cli import main
from tests.conftest import KEY, LiveServer, image_bytes, wav_bytes

pytestmark = pytest.mark.e2e

FLAGS = {"first_frame": "--image", "reference_image": "--reference", "driving_audio": "--audio"}


def every_model() -> list[tuple[str, str]]:
    return [(spec.provider, model) for spec in load_specs() for model in spec.models]


@pytest.fixture(scope="module")
def media_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    image = folder / "frame.png"
    image.write_bytes(image_bytes(960, 540))
    audio = folder / "voice.wav"
    audio.write_bytes(wav_bytes(3))
    return {"image": image, "audio": audio}


@pytest.mark.parametrize(("provider", "model"), every_model())
def test_generate_every_model(
    serve: Callable[..., LiveServer],
    specs: SpecSet,
    media_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    model: str,
) -> None:
    server = serve(timing="instant")
    spec = specs[provider]
    monkeypatch.setenv(spec.api_key_env, KEY)
    args = [
        "generate",
        "--provider",
        provider,
        "--model",
        model,
        "--base-url",
        f"{server.url}/{provider}",
        "--prompt",
        "a lighthouse at dusk",
        "--duration",
        "3",
        "--poll-interval",
        "0.05",
        "--out",
        str(tmp_path / "out.mp4"),
        "--json",
    ]
    rules = spec.models[model]
    needed = {t for t, r in rules.media.items() if r.min > 0} | {g[0] for g in rules.media_one_of}
    for media_type, rule in rules.media.items():
        if media_type not in FLAGS or (media_type not in needed and media_type != "driving_audio"):
            continue
        local = media_files["audio" if rule.kind == "audio" else "image"]
        if "upload_policy" in spec.operations:
            value = str(local)  # uploaded through the provider's own flow
        else:  # a public URL: host the file in the mock, as a user would
            hosted = httpx.post(f"{server.url}/_paddock/media", content=local.read_bytes())
            value = hosted.json()["url"]
        args += [FLAGS[media_type], value]

    assert main(args) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert printed["state"] == "SUCCEEDED" and printed["provider"] == provider
    with av.open(printed["file"]) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.05)


def test_status_and_cancel(
    serve: Callable[..., LiveServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve(timing="realistic")
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    base = ["--provider", "dashscope", "--base-url", f"{server.url}/dashscope"]
    created = httpx.post(
        f"{server.url}/dashscope/api/v1/services/aigc/video-generation/video-synthesis",
        headers={"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable"},
        json={"model": "happyhorse-1.0-t2v", "input": {"prompt": "tide"}},
    ).json()["output"]["task_id"]
    assert main(["status", *base, created]) == 0
    assert capsys.readouterr().out.startswith(f"{created}  PENDING")
    assert main(["cancel", *base, created]) == 0
    assert main(["status", *base, "--json", created]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "CANCELED"
    assert main(["cancel", *base, created]) == 1
    assert "UnsupportedOperation" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "args", "says", "status"),
    [
        ({}, ["--model", "happyhorse-1.0-t2v"], "no API key: set ANYFAST_API_KEY", 2),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "sora-2"],
            "--model 'sora-2' is not a anyfast model",
            2,
        ),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "happyhorse-1.0-t2v", "--duration", "99"],
            "anyfast would refuse this (invalid_request at duration)",
            2,
        ),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "happyhorse-1.0-i2v", "--image", "/tmp/definitely-missing.png"],
            "no such file",
            2,
        ),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "happyhorse-1.0-t2v", "--duration", "five"],
            "argument --duration: expected a whole number",
            2,
        ),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "happyhorse-1.0-t2v", "--base-url", "ftp://127.0.0.1:9"],
            "is not an http(s) URL with a host",
            2,
        ),
        (
            {"ANYFAST_API_KEY": KEY},
            ["--model", "happyhorse-1.0-t2v", "--base-url", "http://127.0.0.1:99999"],
            "Port out of range",
            2,
        ),
    ],
)
def test_mistakes_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    args: list[str],
    says: str,
    status: int,
) -> None:
    monkeypatch.delenv("ANYFAST_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(
        [
            "generate",
            "--provider",
            "anyfast",
            "--base-url",
            "http://127.0.0.1:9",
            "--prompt",
            "x",
            "--out",
            str(tmp_path / "x.mp4"),
            *args,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == status
    assert len(err) == 1 and says in err[0], err
    assert KEY not in err[0]
