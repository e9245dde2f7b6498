"""One redaction policy for everything paddock writes out.

The mock's request journal, the recordings of ``--record`` and ``drift run``,
conformance failures (their messages and ``curl`` lines) and the reports built
from them all pass what they show through :class:`RedactionPolicy`, so a
secret hidden in one place is hidden in all of them, by the same rules.

What is redacted, and why:

- **Headers whose name looks like a credential.** Clients and providers invent
  their own (``X-DashScope-ApiKey``, ``X-Amz-Security-Token``, ``X-JWT``,
  ``X-DashScope-SK``), so names are judged by pattern, not by a list: the name
  is split into word parts on ``-``, ``_``, ``.`` and spaces, and it is secret
  when any part *contains* auth, key, token, secret, signature, credential,
  cookie, passw, session, jwt or bearer, or *is* sk, ak, sig, pwd, pass, org or
  organization (account identifiers such as ``OpenAI-Organization`` tell who
  is paying). Short words count only as whole parts: ``X-DashScope-SK`` is
  secret, ``X-DashScope-OssResourceResolve`` (whose ``enable`` a spec
  requires) and ``X-DashScope-Async`` are not. The parts ``tokens`` (rate-limit
  counters) and ``authority`` are not credentials. The value keeps its scheme
  word (``Bearer REDACTED``) so a reader sees which auth was tried; an empty
  value stays empty, since it holds nothing and shows that no key was sent.
- **JSON body fields whose name looks like a credential**, at any depth and in
  arrays: ``api_key``, ``apiKey``, ``access_token``, ``client_secret``,
  ``password``, ``private_key``, ``credentials``... Field names are split into
  word parts also at camelCase, and only whole parts count (``key``,
  ``token``, ``secret``...) or a joined name containing a compound such as
  ``apikey`` or ``accesstoken``: ``max_tokens``, ``keyframes`` and
  ``input_tokens`` are kept. A secret field's strings and numbers are replaced,
  and everything inside a secret object or array too, but its shape stays
  (``null``, booleans and empty strings carry nothing and are kept), so a drift
  analysis still sees the same types.
- **URLs**, in bodies, headers and free text, whatever their scheme (``https``,
  ``redis``, ``oss``): userinfo (``user:pass@`` becomes
  ``REDACTED:REDACTED@``, so a URL that had credentials still visibly had
  them) and query or fragment parameters whose name looks like a credential by
  the body-field rule (``Signature``, ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, ``OSSAccessKeyId``, ``token``, ``access_token``,
  ``sig``, ``key``, ``api_key``, ``X-Goog-Signature``...). Parameters a spec
  declares as a result link's ``signature_params`` are always redacted.
- **Free text** (log lines, error messages, non-JSON bodies): URLs inside it,
  ``Bearer``/``Basic`` followed by a credential-looking token, ``"name": "value"``
  pairs and ``name=value`` pairs with a credential-like name (a body cut at the
  journal's limit is no longer JSON, yet still holds fields).
- **Known secrets** (the keys a run or a server was given) wherever they
  occur, in any of the above, including JSON object keys.

What is kept, and why:

- Every other header, field and parameter, verbatim: a journal or a recording
  exists to show what was said, and drift re-validates recorded requests
  against the spec, so the required headers and body fields must survive.
- The ``keep_params`` (a spec's ``results.expiry_param``, e.g. ``Expires``):
  a link's expiry is public, and drift reads it. It wins over everything else.
- The path of a URL (a credential in a path cannot be told from an id), and
  everything deeper than :data:`MAX_DEPTH` levels of JSON is replaced whole,
  since it cannot be vouched for without unbounded recursion.

Name decisions are cached in bounded LRU caches (:data:`NAME_CACHE` names
each), so the mock's hot path (every request's headers go through
:meth:`RedactionPolicy.raw_headers`) costs a dictionary lookup per header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import orjson

__all__ = [
    "MARKER",
    "MAX_DEPTH",
    "NAME_CACHE",
    "RedactingFilter",
    "RedactionPolicy",
    "secret_field",
    "secret_header",
]

MARKER = "REDACTED"
MAX_DEPTH = 64  # JSON nesting redacted field by field; deeper subtrees become the marker
NAME_CACHE = 4096  # names remembered per judge; names come from clients, so it is bounded

# A header name part containing any of these is a credential's name.
_HEADER_WORDS = (
    "auth",
    "key",
    "token",
    "secret",
    "signature",
    "credential",
    "cookie",
    "passw",
    "session",
    "jwt",
    "bearer",
)
# Too short to look for inside words (``sk`` is in ``task``): whole parts only.
_HEADER_PARTS = frozenset({"sk", "ak", "sig", "pwd", "pass", "org", "organization"})
# Parts that contain a word above but name no credential.
_HEADER_HARMLESS = frozenset({"tokens", "authority"})

# A field or parameter name with one of these whole parts is a credential's name.
_FIELD_PARTS = frozenset(
    {
        "key",
        "token",
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "cookies",
        "signature",
        "sig",
        "jwt",
        "sk",
        "ak",
        "session",
        "bearer",
        "apikey",
        "otp",
    }
)
# ... or whose parts, joined, contain one of these (``apiKeys``, ``x_refreshtoken``).
_FIELD_WORDS = (
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "secret",
    "password",
    "passwd",
    "credential",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "idtoken",
    "sessiontoken",
    "securitytoken",
    "signature",
    "authorization",
    "cookie",
    "jwt",
)
# Scheme words of an Authorization value: shown, because they are not the secret.
_SCHEMES = frozenset(
    {
        "bearer",
        "basic",
        "token",
        "digest",
        "negotiate",
        "ntlm",
        "hmac",
        "key",
        "apikey",
        "aws4-hmac-sha256",
        "goog4-hmac-sha256",
        "oss",
        "oss4-hmac-sha256",
        "acs3-hmac-sha256",
    }
)

# Text can hold a credential-like field only if some name in it contains one of these:
# one cheap scan spares the field-by-field pass for most bodies.
_FIELDISH = re.compile("|".join(sorted(map(re.escape, _FIELD_PARTS | set(_FIELD_WORDS)))))
_SEPARATORS = re.compile(r"[-_.\s]+")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_TAIL = re.compile(r"[^\s\"'<>\\`]*")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_AUTH_IN_TEXT = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
# A JSON string member, possibly cut off at a length limit (no closing quote).
_JSON_PAIR = re.compile(r'"([^"\\\n]{1,64})"(\s*:\s*)"(?:[^"\\]|\\.)*"?')
# The name of a name=value pair, ending where the "=" is (searched up to it).
_NAME_BEFORE = re.compile(r"(?<![\w.%-])[A-Za-z_][\w.-]{0,63}\Z")
_VALUE = re.compile(r"[^\s&\"'<>,;]+")


@lru_cache(maxsize=NAME_CACHE)
def secret_header(name: str | bytes) -> bool:
    """Whether a header of this name (any case, str or ASGI bytes) carries a credential."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    for part in _SEPARATORS.split(text.lower()):
        if part in _HEADER_HARMLESS:
            continue
        if part in _HEADER_PARTS or any(word in part for word in _HEADER_WORDS):
            return True
    return False


@lru_cache(maxsize=NAME_CACHE)
def secret_field(name: str) -> bool:
    """Whether a JSON field or URL parameter of this name carries a credential.

    Names that are not identifiers (URLs used as object keys, long text) are
    not judged: their words would be those of the value, not of a name.
    """
    if len(name) > 100 or "/" in name:
        return False
    parts = [word.lower() for word in _WORDS.findall(name)]
    if any(part in _FIELD_PARTS for part in parts):
        return True
    joined = "".join(parts)
    return any(word in joined for word in _FIELD_WORDS)


@lru_cache(maxsize=NAME_CACHE)
def _plain_value(value: bytes) -> bool:
    """Whether a header value holds nothing the text rules act on (barring known secrets).

    Cached because most values repeat on every request (``enable``,
    ``application/json``, a client's User-Agent); only values of headers whose
    name is not a credential's ever reach it.
    """
    text = value.decode("latin-1")
    if "://" in text or "=" in text or '"' in text:
        return False
    lowered = text.lower()
    return "bearer" not in lowered and "basic" not in lowered


class RedactionPolicy:
    """The redaction rules, with what a caller knows: its secrets and its spec's link params.

    ``secrets``: values to replace wherever they occur (the keys in use).
    ``signature_params``: URL parameters always redacted (a spec's
    ``results.signature_params``). ``keep_params``: URL parameters always kept
    (a spec's ``results.expiry_param``); they win over both other rules.
    ``marker``: what a redacted value reads as.
    """

    __slots__ = ("_keep", "_secret_bytes", "_secrets", "_signed", "marker")

    def __init__(
        self,
        *,
        secrets: Iterable[str] = (),
        signature_params: Iterable[str] = (),
        keep_params: Iterable[str] = (),
        marker: str = MARKER,
    ) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._secret_bytes = tuple(s.encode("latin-1", "replace") for s in self._secrets)
        self._signed = frozenset(p.lower() for p in signature_params)
        self._keep = frozenset(p.lower() for p in keep_params)
        self.marker = marker

    def with_secrets(self, *secrets: str) -> RedactionPolicy:
        """The same policy, also hiding ``secrets`` (a server learns its keys after start-up)."""
        return RedactionPolicy(
            secrets=(*self._secrets, *secrets),
            signature_params=self._signed,
            keep_params=self._keep,
            marker=self.marker,
        )

    # -- headers --------------------------------------------------------------------------------

    def header(self, name: str, value: str) -> str:
        """One header's value as it may be shown."""
        if secret_header(name):
            return self._credential(value)
        return self.text(value)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A header mapping as it may be shown; names and their case are kept."""
        return {name: self.header(name, value) for name, value in headers.items()}

    def raw_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """ASGI header pairs as they may be shown: the mock journal's hot path."""
        out = []
        for name, value in headers:
            if secret_header(name):
                value = self._credential(value.decode("latin-1")).encode("latin-1", "replace")
            elif self._maybe(value):
                value = self.text(value.decode("latin-1")).encode("latin-1", "replace")
            out.append((name, value))
        return out

    def _maybe(self, value: bytes) -> bool:
        """Whether a header value may hold anything :meth:`text` hides."""
        if not _plain_value(value):
            return True
        return bool(self._secret_bytes) and any(s in value for s in self._secret_bytes)

    def _credential(self, value: str) -> str:
        """A credential header's value: its scheme word stays, the rest never does."""
        if not value:
            return value
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() in _SCHEMES:
            return f"{scheme} {self.marker}" if rest.strip() else scheme
        return self.marker

    # -- URLs and text --------------------------------------------------------------------------

    def url(self, url: str) -> str:
        """A URL without userinfo, known secrets and credential-like query or fragment params."""
        for secret in self._secrets:
            if secret in url:
                url = url.replace(secret, self.marker)
        prefix, rest = "", url
        cut = url.find("://")
        if cut >= 0:
            start = cut + 3
            end = len(url)
            for stop in "/?#":
                found = url.find(stop, start)
                if 0 <= found < end:
                    end = found
            userinfo, at, host = url[start:end].rpartition("@")
            if at:
                user, colon, _ = userinfo.partition(":")
                shown = (self.marker if user else "") + (":" + self.marker if colon else "")
                prefix, rest = url[:start] + shown + "@" + host, url[end:]
        rest, hashmark, fragment = rest.partition("#")
        path, question, query = rest.partition("?")
        if question:
            query = self._params(query)
        if hashmark and "=" in fragment:
            fragment = self._params(fragment)
        return prefix + path + question + query + hashmark + fragment

    def _params(self, query: str) -> str:
        pieces = query.split("&")
        for i, piece in enumerate(pieces):
            name, eq, value = piece.partition("=")
            if eq and value and self._secret_param(unquote_plus(name)):
                pieces[i] = f"{name}={self.marker}"
        return "&".join(pieces)

    def _secret_param(self, name: str) -> bool:
        lowered = name.lower()
        if lowered in self._keep:
            return False
        return lowered in self._signed or secret_field(name)

    def text(self, text: str) -> str:
        """Free text (a log line, a message, a body that is not JSON) as it may be shown."""
        # Each rule is gated by a substring test: most strings (prompts, ids,
        # base64) need none, and these tests cost far less than a regex scan.
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, self.marker)
        # A URL hides something only in userinfo ("@"), a query or a fragment.
        if "://" in text and ("@" in text or "?" in text or "#" in text):
            text = self._urls(text)
        lowered = text.lower()
        if "bearer" in lowered or "basic" in lowered:
            text = _AUTH_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{self.marker}", text)
        if '"' in text and _FIELDISH.search(lowered):
            text = _JSON_PAIR.sub(self._pair, text)
        if "=" in text:
            text = self._name_values(text)
        return text

    def _urls(self, text: str) -> str:
        # Found by "://" and walked outwards, not by one regex: a regex anchored
        # on the scheme would retry at every letter of a long base64 run.
        out: list[str] = []
        pos = 0
        while (found := text.find("://", pos)) >= 0:
            start = found
            while start > pos and found - start < 32 and text[start - 1] in _SCHEME_CHARS:
                start -= 1
            match = _URL_TAIL.match(text, found + 3)
            end = match.end() if match else found + 3
            out += [text[pos:start], self.url(text[start:end])]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _pair(self, match: re.Match[str]) -> str:
        if not secret_field(match.group(1)):
            return match.group(0)
        return f'"{match.group(1)}"{match.group(2)}"{self.marker}"'

    def _name_values(self, text: str) -> str:
        # Found by "=" and read backwards: a regex for name=value would try a
        # name at every character of a long base64 run.
        out: list[str] = []
        pos = 0
        while (eq := text.find("=", pos)) >= 0:
            name = _NAME_BEFORE.search(text, max(pos, eq - 64), eq)
            value = _VALUE.match(text, eq + 1)
            if (
                name is not None
                and value is not None
                and value.group(0) != self.marker
                and self._secret_param(name.group(0))
            ):
                out += [text[pos : eq + 1], self.marker]
                pos = value.end()
            else:
                out.append(text[pos : eq + 1])
                pos = eq + 1
        out.append(text[pos:])
        return "".join(out)

    # -- JSON -----------------------------------------------------------------------------------

    def json(self, value: Any) -> Any:
        """A parsed JSON value as it may be shown; the input is not changed.

        Returns the very same object when nothing in it needed redacting, so a
        caller can keep the original bytes (and their formatting).
        """
        return self._value(value, False, 0)

    def _value(self, value: Any, hidden: bool, depth: int) -> Any:
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return self.marker
            changed = False
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    name, inner = self._key(key), hidden or secret_field(key)
                else:
                    name, inner = key, hidden
                # Strings are judged inline, not by a call each: this runs on
                # every body the mock journals, and most of a body is strings.
                if isinstance(item, str) and not inner:
                    shown = self.text(item)
                    if shown == item:
                        shown = item
                else:
                    shown = self._value(item, inner, depth + 1)
                changed = changed or shown is not item or name is not key
                out[name] = shown
            return out if changed else value
        if isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                return self.marker
            items = [self._value(item, hidden, depth + 1) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return items
            return value
        if isinstance(value, str):
            if hidden:
                return self.marker if value else value
            shown_text = self.text(value)
            return value if shown_text == value else shown_text
        if hidden and isinstance(value, int | float) and not isinstance(value, bool):
            return self.marker
        return value

    def _key(self, key: str) -> str:
        # An identifier holds no URL, no "Bearer x" and no name=value: only a known secret.
        if key.isidentifier() and not (
            self._secrets and any(secret in key for secret in self._secrets)
        ):
            return key
        shown = self.text(key)
        return key if shown == key else shown

    def body(self, body: bytes) -> bytes:
        """A request or response body as it may be kept: JSON field by field, else as text.

        The very same bytes come back when nothing needed redacting.
        """
        if not body:
            return body
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace")
            shown = self.text(text)
            return body if shown == text else shown.encode()
        shown_value = self.json(value)
        return body if shown_value is value else orjson.dumps(shown_value)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's text through a policy.

    Install it on a *handler* (``handler.addFilter(RedactingFilter(policy))``):
    a logger's own filters do not see records its children propagate. The
    message is rendered once with its arguments, and a traceback is rendered
    here too, so neither an argument nor an exception's message escapes.
    """

    def __init__(self, policy: RedactionPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or RedactionPolicy()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.policy.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.policy.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.policy.text(record.stack_info)
        return True
