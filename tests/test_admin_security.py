"""Who may reach the admin API, and what hostile callers cannot make the mock do.

Each test would pass on a mock without the protection it names only if the
protection were not needed: they attack it the way a stranger on the network
or a web page in a developer's browser would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mock_server.admin import LOOPBACK_HOSTS, AdminAccess
from mock_server.app import Options
from tests.conftest import AUTH, CREATE_PATHS, DASHSCOPE_HEADERS, Mock, ServeProcess, image_bytes

T2V = {"model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse"}, "parameters": {}}


def admin_mock(make_mock: Callable[..., Mock], **access: Any) -> Mock:
    mock = make_mock(options=Options(admin=AdminAccess(**access)))
    assert mock.create("dashscope", T2V).status_code == 200
    return mock


def task_count(mock: Mock) -> int:
    return len(mock.tasks())


def test_a_loopback_mock_refuses_a_rebinding_host(make_mock: Callable[..., Mock]) -> None:
    mock = admin_mock(make_mock, hosts=LOOPBACK_HOSTS)
    refused = mock.client.post("/_paddock/reset", headers={"Host": "evil.example:8000"})
    assert refused.status_code == 403 and "Host" in refused.json()["error"]
    assert task_count(mock) == 1
    assert mock.client.get("/_paddock/tasks", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert mock.client.get("/_paddock/tasks", headers={"Host": "localhost"}).status_code == 200


def test_a_token_locks_every_admin_call_but_health(make_mock: Callable[..., Mock]) -> None:
    mock = admin_mock(make_mock, mode="token", token="s3cret-admin")
    for method, path in [
        ("GET", "/_paddock/requests"),
        ("GET", "/_paddock/tasks"),
        ("POST", "/_paddock/reset"),
        ("POST", "/_paddock/clock/advance"),
        ("POST", "/_paddock/media"),
        ("GET", "/_paddock/nowhere"),
    ]:
        for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-admin"}):
            answer = mock.client.request(method, path, headers=sent, json={"seconds": 9e9})
            assert answer.status_code == 401, (method, path, sent)
    assert task_count(mock) == 1
    assert mock.client.get("/_paddock/health").status_code == 200
    good = {"Authorization": "Bearer s3cret-admin"}
    assert mock.client.get("/_paddock/tasks", headers=good).json()["total"] == 1
    assert "s3cret-admin" not in str(mock.client.get("/_paddock/requests", headers=good).json())


def test_admin_off_answers_nothing_but_health(make_mock: Callable[..., Mock]) -> None:
    mock = admin_mock(make_mock, mode="off")
    assert mock.client.post("/_paddock/reset").status_code == 403
    assert mock.client.get("/_paddock/requests").status_code == 403
    assert mock.client.get("/_paddock/health").status_code == 200
    assert task_count(mock) == 1


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Origin": "https://evil.example"}, b""),
        ({"Content-Type": "text/plain"}, b'{"seconds": 1}'),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"seconds=1"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
    ],
)
def test_a_web_page_cannot_reset_a_developers_mock(
    make_mock: Callable[..., Mock], headers: dict[str, str], content: bytes
) -> None:
    mock = admin_mock(make_mock)
    answer = mock.client.post("/_paddock/reset", headers=headers, content=content)
    assert answer.status_code in (403, 415)
    assert task_count(mock) == 1
    moved = mock.client.post("/_paddock/clock/advance", headers=headers, content=content)
    assert moved.status_code in (403, 415)
    same_origin = {"Origin": "http://testserver", "Content-Type": "application/json"}
    assert mock.client.post("/_paddock/reset", headers=same_origin).status_code == 200
    assert task_count(mock) == 0


def test_hosted_media_is_served_as_what_it_is(mock: Mock) -> None:
    png = image_bytes(320, 320)
    hosted = mock.client.post("/_paddock/media", content=png, headers={"Content-Type": "text/html"})
    assert hosted.status_code == 201
    served = mock.client.get(hosted.json()["url"])
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.content == png


def _upload(mock: Mock, key: str, data: bytes) -> str:
    policy = mock.client.get(
        "/dashscope/api/v1/uploads",
        params={"action": "getPolicy", "model": "happyhorse-1.0-i2v"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["data"]
    name = f"{policy['upload_dir']}/cat.png"
    form = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": name,
        "success_action_status": "200",
    }
    stored = mock.client.post("/_storage/oss", data=form, files={"file": ("cat.png", data)})
    assert stored.status_code == 200, stored.text
    return f"oss://{name}"


def test_an_uploaded_object_is_usable_only_by_the_key_that_uploaded_it(mock: Mock) -> None:
    url = _upload(mock, "sk-owner", image_bytes(640, 480))
    body = {
        "model": "happyhorse-1.0-i2v",
        "input": {"prompt": "x", "media": [{"type": "first_frame", "url": url}]},
    }
    headers = {**DASHSCOPE_HEADERS, "X-DashScope-OssResourceResolve": "enable"}
    stranger = mock.client.post(
        CREATE_PATHS["dashscope"],
        json=body,
        headers={**headers, "Authorization": "Bearer sk-stranger"},
    )
    assert stranger.status_code == 400 and stranger.json()["code"] == "InvalidURL"
    owner = mock.client.post(
        CREATE_PATHS["dashscope"],
        json=body,
        headers={**headers, "Authorization": "Bearer sk-owner"},
    )
    assert owner.status_code == 200


def test_a_public_bind_without_a_token_disables_admin(
    paddock_serve: Callable[..., ServeProcess],
) -> None:
    served = paddock_serve("--host", "0.0.0.0")
    assert "admin      disabled" in served.output()
    assert httpx.post(served.url + "/_paddock/reset").status_code == 403
    assert httpx.get(served.url + "/_paddock/requests").status_code == 403
    assert httpx.get(served.url + "/_paddock/health").status_code == 200
    task = httpx.post(served.url + CREATE_PATHS["dashscope"], json=T2V, headers=DASHSCOPE_HEADERS)
    assert task.status_code == 200  # the provider routes are what it is there for
    assert AUTH["Authorization"] not in served.output()
