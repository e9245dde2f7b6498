"""Object storage as the providers' clients meet it: signed result links, uploads, hosted media.

Result videos are served from URLs signed with a per-server secret that
expire on the mock's clock, the way OSS links do. The upload-policy flow of
the official DashScope SDK lands files here, and so does ``POST
/_paddock/media``, which hands back an http URL any client can send as media.
The media resolver turns each URL form a client may send into probed media.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from contracts.media import MediaError, MediaInfo, decode_data_uri, probe
from contracts.validate import MediaUnavailable, check_remote_url

__all__ = ["Blob", "MediaStore", "MockMediaResolver", "Signer", "UploadPolicy"]

HOSTED_PREFIX = "/_paddock/media/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """HMAC signatures for result links and upload policies."""

    access_key_id = "PADDOCKMOCKACCESSKEY"

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._owners: dict[str, str] = {}

    def sign(self, *parts: str) -> str:
        message = "\n".join(parts).encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest()[:20])

    def owner(self, key: str) -> str:
        """A task owner's name: an HMAC of the key under the server's secret.

        Stable for the server's life (and across workers sharing the secret),
        never the key, and not confirmable by hashing a guessed weak key.
        """
        name = self._owners.get(key)
        if name is None:
            if len(self._owners) > 4096:
                self._owners.clear()
            name = self._owners[key] = hmac.new(
                self._secret, key.encode(), hashlib.sha256
            ).hexdigest()[:24]
        return name

    def verify(self, signature: str, *parts: str) -> bool:
        # Bytes: compare_digest refuses non-ASCII str, and a query string can carry anything.
        expected = self.sign(*parts).encode()
        return hmac.compare_digest(signature.encode("utf-8", "replace"), expected)


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    content_type: str
    info: MediaInfo | None


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    policy: str
    signature: str
    directory: str
    expires: float
    max_bytes: int


class MediaStore:
    """Uploaded and hosted files, bounded in total size (oldest evicted first)."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.max_bytes = max_bytes

    def put(self, key: str, blob: Blob) -> None:
        with self._lock:
            old = self._blobs.pop(key, None)
            if old is not None:
                self._size -= len(old.data)
            self._blobs[key] = blob
            self._size += len(blob.data)
            while self._size > self.max_bytes and len(self._blobs) > 1:
                _, evicted = self._blobs.popitem(last=False)
                self._size -= len(evicted.data)

    def get(self, key: str) -> Blob | None:
        return self._blobs.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._blobs

    def clear(self) -> None:
        with self._lock:
            self._blobs.clear()
            self._size = 0

    def host(self, data: bytes, content_type: str | None) -> tuple[str, Blob]:
        """Keep a file the mock will serve; probe it now so a bad file fails at upload."""
        info = probe(data)
        key = secrets.token_hex(12) + "." + info.format
        blob = Blob(data, content_type or info.mime or "application/octet-stream", info)
        self.put(f"hosted/{key}", blob)
        return key, blob

    def issue_policy(
        self, signer: Signer, owner: str, model: str, now: float, ttl: int, max_bytes: int
    ) -> UploadPolicy:
        directory = f"dashscope-instant/{owner[:16]}/{model}/{secrets.token_hex(8)}"
        expires = now + ttl
        policy = _b64(
            json.dumps(
                {
                    "expiration": expires,
                    "conditions": [
                        ["starts-with", "$key", directory],
                        ["content-length-range", 0, max_bytes],
                    ],
                }
            ).encode()
        )
        return UploadPolicy(policy, signer.sign("policy", policy), directory, expires, max_bytes)

    @staticmethod
    def read_policy(policy: str) -> dict[str, Any] | None:
        try:
            padded = policy + "=" * (-len(policy) % 4)
            doc = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, TypeError):
            return None
        return doc if isinstance(doc, dict) else None


class MockMediaResolver:
    """Resolve media URLs for one request: data: URIs, uploads, hosted files, remote URLs."""

    def __init__(self, store: MediaStore, upload_scheme: str | None) -> None:
        self._store = store
        self._upload_scheme = upload_scheme

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        if url.startswith("data:"):
            try:
                _, payload = decode_data_uri(url)
                return "data", probe(payload)
            except MediaError as exc:
                raise MediaUnavailable("media_unreadable", str(exc)) from None
        if self._upload_scheme and url.startswith(self._upload_scheme):
            key = url[len(self._upload_scheme) :]
            blob = self._store.get(f"uploads/{key}")
            if blob is None:
                raise MediaUnavailable("media_url", f"no uploaded file at {url!r}; upload it first")
            return "upload", self._probed(blob)
        check_remote_url(url)
        path = urlsplit(url).path
        if path.startswith(HOSTED_PREFIX):
            blob = self._store.get("hosted/" + path[len(HOSTED_PREFIX) :])
            if blob is not None:
                return "hosted", self._probed(blob)
        return "remote", None

    @staticmethod
    def _probed(blob: Blob) -> MediaInfo:
        if blob.info is not None:
            return blob.info
        try:
            return probe(blob.data)
        except MediaError as exc:
            raise MediaUnavailable("media_unreadable", str(exc)) from None
