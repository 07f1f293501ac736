"""Pusher's HTTP API request signing: who may call ``/apps/{app_id}/...``.

A server library signs each request with the app's secret: the query carries ``auth_key``,
``auth_timestamp`` (Unix seconds), ``auth_version=1.0``, ``body_md5`` (the hex MD5 of a
non-empty body) and ``auth_signature``, the hex HMAC-SHA256 under the secret of
``METHOD\\nPATH\\nQUERY``, where QUERY is every other parameter, keys in lower case, sorted by key,
joined as ``k=v&...`` without URL escaping. A request is taken only if its key is the app's, its
timestamp within ``MAX_CLOCK_SKEW`` seconds of now, its body matches ``body_md5`` and its
signature is right (compared in constant time). Each refusal carries the status and a plain-text
message shaped as Pusher's own, so a Pusher library shows its user what it would show against
Pusher.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import attrs

MAX_CLOCK_SKEW = 600
"""Seconds a request's ``auth_timestamp`` may differ from the server's clock (Pusher's rule)."""

AUTH_VERSION = "1.0"
SIGNATURE = "auth_signature"
_REQUIRED = ("auth_key", "auth_timestamp", "auth_version", SIGNATURE)


@attrs.frozen
class RequestRefused(Exception):
    """A request the HTTP API does not serve: ``status`` and the plain-text ``message``."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def body_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, path: str, query: Mapping[str, str]) -> str:
    """``METHOD\\nPATH\\nk=v&...``: the query without ``auth_signature``, keys in lower case and
    sorted, values as they are (not URL-escaped)."""
    params = sorted(
        (key.lower(), value) for key, value in query.items() if key.lower() != SIGNATURE
    )
    return "\n".join([method.upper(), path, "&".join(f"{key}={value}" for key, value in params)])


def signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    *,
    key: str,
    secret: str,
    timestamp: int,
) -> dict[str, str]:
    """``query`` with the auth parameters a Pusher server library adds (for tests and tools)."""
    signed = dict(query)
    signed.update(auth_key=key, auth_timestamp=str(timestamp), auth_version=AUTH_VERSION)
    if body:
        signed["body_md5"] = body_md5(body)
    signed[SIGNATURE] = signature(secret, string_to_sign(method, path, signed))
    return signed


def verify(
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    *,
    key: str,
    secret: str,
    now: float,
    max_skew: float = MAX_CLOCK_SKEW,
) -> None:
    """Accept a signed request or raise ``RequestRefused`` (401) saying what is wrong.

    ``now`` is the server's clock in Unix seconds.
    """
    missing = [name for name in _REQUIRED if not query.get(name)]
    if missing:
        raise RequestRefused(401, f"Missing authentication parameter(s): {', '.join(missing)}")
    if not hmac.compare_digest(query["auth_key"].encode(), key.encode()):
        raise RequestRefused(401, f"Unknown auth_key: {query['auth_key'][:64]!r}")
    if query["auth_version"] != AUTH_VERSION:
        raise RequestRefused(
            401, f"Unsupported auth_version {query['auth_version'][:16]!r}: use {AUTH_VERSION}"
        )
    timestamp = _timestamp(query["auth_timestamp"])
    if abs(timestamp - now) > max_skew:
        raise RequestRefused(
            401,
            f"Timestamp expired: Given timestamp ({timestamp}) not within {max_skew:.0f}s "
            f"of server time ({now:.0f})",
        )
    given_md5 = query.get("body_md5")
    if body or given_md5 is not None:
        actual = body_md5(body)
        if given_md5 is None:
            raise RequestRefused(401, "Missing body_md5: a request with a body must sign it")
        if not hmac.compare_digest(given_md5.lower().encode(), actual.encode()):
            raise RequestRefused(
                401, f"Invalid body_md5: the body's MD5 is {actual}, not {given_md5[:64]!r}"
            )
    text = string_to_sign(method, path, query)
    if not hmac.compare_digest(query[SIGNATURE].lower().encode(), signature(secret, text).encode()):
        raise RequestRefused(
            401,
            f"Invalid signature: you should have sent HmacSHA256Hex({text!r}, your_secret_key),"
            f" but you sent {query[SIGNATURE][:128]!r}",
        )


def _timestamp(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise RequestRefused(401, f"Invalid auth_timestamp {text[:32]!r}: give Unix seconds")
    return int(text)
