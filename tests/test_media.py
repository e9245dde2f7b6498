"""Media probing: what the mock accepts as an upload and what a client checks before sending."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from contracts.media import MediaError, decode_data_uri, probe, probe_file
from mock_server.videos import render_mp4
from tests.conftest import wav_bytes


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("PNG", "png"),
        ("JPEG", "jpeg"),
        ("BMP", "bmp"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("TIFF", "tiff"),
    ],
)
def test_images_probe_to_their_real_format_and_size(pillow_format: str, expected: str) -> None:
    data = image_bytes(pillow_format)

    info = probe(data)

    assert info.kind == "image"
    assert info.format == expected
    assert (info.width, info.height) == (64, 48)
    assert info.bytes == len(data)
    assert info.aspect == pytest.approx(4 / 3)
    assert info.mime == f"image/{expected}"
    assert info.duration is None


def test_summary_is_json_ready_with_a_fixed_shape() -> None:
    summary = probe(image_bytes("PNG", (1280, 720))).summary()

    assert json.loads(json.dumps(summary)) == summary
    assert summary["format"] == "png"
    assert summary["aspect"] == pytest.approx(1.7778)
    assert summary["duration"] is None


@pytest.mark.parametrize("pillow_format", ["PNG", "JPEG", "BMP", "WEBP", "TIFF"])
def test_a_half_uploaded_image_is_rejected(pillow_format: str) -> None:
    data = image_bytes(pillow_format, (200, 150))

    with pytest.raises(MediaError, match=r"truncated|corrupt"):
        probe(data[: len(data) // 2])


def test_every_truncation_of_a_png_or_jpeg_is_rejected() -> None:
    for data in (image_bytes("PNG", (16, 16)), image_bytes("JPEG", (16, 16))):
        for cut in range(1, len(data)):
            with pytest.raises(MediaError):
                probe(data[:cut])


def test_a_png_with_a_mangled_header_says_it_is_a_corrupt_png() -> None:
    data = image_bytes("PNG")
    mangled = data[:8] + b"\x00" * 32 + data[40:]

    with pytest.raises(MediaError, match="png"):
        probe(mangled)


def test_garbage_and_empty_payloads_are_rejected() -> None:
    with pytest.raises(MediaError, match="not a supported image, audio or video file"):
        probe(b"this is certainly not a picture" * 20)
    with pytest.raises(MediaError, match="empty media payload"):
        probe(b"")


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=2048))
def test_arbitrary_bytes_only_ever_raise_media_error(data: bytes) -> None:
    with contextlib.suppress(MediaError):
        probe(data)


def test_oversized_images_are_refused_as_decompression_bombs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)

    # Over twice the limit: Pillow raises.
    with pytest.raises(MediaError, match="decompression bomb"):
        probe(image_bytes("PNG", (64, 48)))
    # Between the limit and twice it: Pillow only warns, we still refuse.
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(MediaError, match="decompression bomb"),
    ):
        probe(image_bytes("PNG", (40, 40)))


def test_wav_probes_as_audio_with_its_duration() -> None:
    info = probe(wav_bytes(2.0))

    assert (info.kind, info.format, info.mime) == ("audio", "wav", "audio/wav")
    assert info.duration == pytest.approx(2.0, abs=0.01)
    assert info.width is None
    assert info.aspect is None


def test_rendered_mp4_probes_as_video() -> None:
    data = render_mp4(128, 72, 1)

    info = probe(data)

    assert (info.kind, info.format, info.mime) == ("video", "mp4", "video/mp4")
    assert (info.width, info.height) == (128, 72)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.bytes == len(data)


def test_a_cut_off_mp4_is_rejected_even_though_its_header_parses() -> None:
    data = render_mp4(128, 72, 1)

    with pytest.raises(MediaError, match="truncated mp4"):
        probe(data[: len(data) * 2 // 3])


def test_probe_file_reads_from_disk(tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    png.write_bytes(image_bytes("PNG"))
    wav = tmp_path / "voice.wav"
    wav.write_bytes(wav_bytes(1.0))

    assert probe_file(png).format == "png"
    assert probe_file(str(wav)).duration == pytest.approx(1.0, abs=0.01)


def test_probe_file_rejects_bad_files_and_reports_missing_ones(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(image_bytes("JPEG")[:-50])

    with pytest.raises(MediaError, match="empty"):
        probe_file(empty)
    with pytest.raises(MediaError, match="truncated jpeg"):
        probe_file(cut)
    with pytest.raises(FileNotFoundError):
        probe_file(tmp_path / "nope.png")


def test_base64_data_uri_round_trips_into_probe() -> None:
    png = image_bytes("PNG")
    uri = "data:image/png;base64," + base64.b64encode(png).decode()

    mime, payload = decode_data_uri(uri)

    assert (mime, payload) == ("image/png", png)
    assert probe(payload).format == "png"


def test_percent_encoded_data_uri_decodes() -> None:
    mime, payload = decode_data_uri("data:text/plain;charset=UTF-8,hello%20world%21")

    assert (mime, payload) == ("text/plain", b"hello world!")


def test_data_uri_defaults_and_lenient_corners() -> None:
    # RFC 2397: no media type means text/plain; the scheme is case-insensitive.
    assert decode_data_uri("data:,abc") == ("text/plain", b"abc")
    assert decode_data_uri("DATA:Image/PNG;base64,QUJD") == ("image/png", b"ABC")
    # Missing padding, line breaks and percent-escaped base64 characters are all common.
    assert decode_data_uri("data:image/png;base64,QUI")[1] == b"AB"
    assert decode_data_uri("data:image/png;base64,QU\nJD")[1] == b"ABC"
    encoded = urllib.parse.quote(base64.b64encode(b"\xfb\xff").decode())
    assert decode_data_uri(f"data:application/octet-stream;base64,{encoded}")[1] == b"\xfb\xff"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://example.com/cat.png", "not a data URI"),
        ("data:image/png;base64", "missing ','"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64,QUJDR", "impossible length"),
        ("data:image/png;base64,", "payload is empty"),
        ("data:image/png,", "payload is empty"),
        ("data:png;base64,QUJD", "not type/subtype"),
    ],
)
def test_malformed_data_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        decode_data_uri(uri)
