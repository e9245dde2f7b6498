"""Object storage as the providers' clients meet it: signed links, upload policies, media lookup.

Result videos are served from URLs signed with the store's shared secret that
expire on the mock's clock, the way OSS links do; any worker can verify a
link another one issued, and a restart keeps them valid. The upload-policy
flow of the official DashScope SDK lands files in the store, and so does
``POST /_paddock/media``, which hands back an http URL any client can send as
media. Validation is synchronous and the store is not, so a create's media
are looked up first (``MediaLookup``) and then judged from what was found.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from contracts.cache import BoundedCache
from contracts.media import MediaError, MediaInfo, decode_data_uri, probe
from contracts.validate import MediaUnavailable, check_remote_url
from mock_server.store import Blob

__all__ = ["HOSTED_PREFIX", "MockMediaResolver", "Signer", "UploadPolicy", "host_blob"]

HOSTED_PREFIX = "/_paddock/media/"
ADMIN_OWNER = "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """HMAC signatures for result links and upload policies, and key digests for owners."""

    access_key_id = "PADDOCKMOCKACCESSKEY"

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._owners: BoundedCache[str, str] = BoundedCache(4096)

    def sign(self, *parts: str) -> str:
        message = "\n".join(parts).encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest()[:20])

    def owner(self, key: str) -> str:
        """A task owner's name: an HMAC of the key under the shared secret.

        Stable across workers and restarts, never the key, and not confirmable
        by hashing a guessed weak key.
        """
        name = self._owners.get(key)
        if name is None:
            name = hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:24]
            self._owners.put(key, name)
        return name

    def verify(self, signature: str, *parts: str) -> bool:
        # Bytes: compare_digest refuses non-ASCII str, and a query string can carry anything.
        expected = self.sign(*parts).encode()
        return hmac.compare_digest(signature.encode("utf-8", "replace"), expected)


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    policy: str
    signature: str
    directory: str
    expires: float
    max_bytes: int


def issue_policy(
    signer: Signer, owner: str, model: str, now: float, ttl: int, max_bytes: int
) -> UploadPolicy:
    """A signed upload policy for one key, naming it as the owner of what is uploaded."""
    directory = f"dashscope-instant/{owner[:16]}/{model}/{secrets.token_hex(8)}"
    expires = now + ttl
    policy = _b64(
        json.dumps(
            {
                "expiration": expires,
                "owner": owner,
                "conditions": [
                    ["starts-with", "$key", directory],
                    ["content-length-range", 0, max_bytes],
                ],
            }
        ).encode()
    )
    return UploadPolicy(policy, signer.sign("policy", policy), directory, expires, max_bytes)


def read_policy(policy: str) -> dict[str, Any] | None:
    try:
        padded = policy + "=" * (-len(policy) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def host_blob(data: bytes) -> tuple[str, Blob]:
    """A file put into the mock through the admin API: probed now, so a bad file fails here.

    It is served back with the type the probe found, never the one the uploader
    claimed, so a file cannot pass itself off as a page on the mock's origin.
    """
    info = probe(data)
    key = "hosted/" + secrets.token_hex(12) + "." + info.format
    return key, Blob(data, info.mime or "application/octet-stream", info, ADMIN_OWNER)


def blob_key(url: str, upload_scheme: str | None) -> str | None:
    """The store key a media URL names, if it names one of the mock's own files."""
    if upload_scheme and url.startswith(upload_scheme):
        return "uploads/" + url[len(upload_scheme) :]
    if url.startswith(("http://", "https://")):
        try:
            path = urlsplit(url).path
        except ValueError:
            return None
        if path.startswith(HOSTED_PREFIX):
            return "hosted/" + path[len(HOSTED_PREFIX) :]
    return None


class MockMediaResolver:
    """Resolve one create's media URLs from what was looked up before validation.

    ``blobs`` maps each URL naming one of the mock's files to what the store
    held (None: nothing). An uploaded file is only usable by the key that
    uploaded it: to any other key it does not exist, as on object storage.
    Other http(s) URLs answer ``remote``, which ``--fetch-media`` then fetches
    (``mock_server.fetch.validate_fetching``).
    """

    def __init__(
        self, upload_scheme: str | None, owner: str, blobs: Mapping[str, Blob | None]
    ) -> None:
        self._upload_scheme = upload_scheme
        self._owner = owner
        self._blobs = blobs

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        if url.startswith("data:"):
            try:
                _, payload = decode_data_uri(url)
                return "data", probe(payload)
            except MediaError as exc:
                raise MediaUnavailable("media_unreadable", str(exc)) from None
        if self._upload_scheme and url.startswith(self._upload_scheme):
            blob = self._blobs.get(url)
            if blob is None or blob.owner != self._owner:
                raise MediaUnavailable("media_url", f"no uploaded file at {url!r}; upload it first")
            return "upload", _probed(blob.data, blob.info)
        check_remote_url(url)
        blob = self._blobs.get(url)
        if blob is not None:
            return "hosted", _probed(blob.data, blob.info)
        return "remote", None


def _probed(data: bytes, info: MediaInfo | None) -> MediaInfo:
    if info is not None:
        return info
    try:
        return probe(data)
    except MediaError as exc:
        raise MediaUnavailable("media_unreadable", str(exc)) from None
