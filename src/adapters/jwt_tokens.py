"""Connection tokens as HS256 JSON Web Tokens, signed with ``REALTIME_SECRET`` (PyJWT).

Claims: ``sub`` the user id, ``exp`` the expiry, ``iat`` the issue time, optional ``info`` (user
info shown to presence members) and ``channels`` (patterns the holder may join). Only HS256 is
accepted when verifying, so ``alg=none`` and tokens signed with another algorithm are refused.

A secret under ``MIN_SECRET_LENGTH`` bytes is refused when the tokens are built: an HS256 secret
is as strong as it is long, and a short one is recovered from a single token by an offline search.
``REALTIME_MAX_TOKEN_TTL`` bounds how long a token may live, at issue and at verification.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

import jwt

from ..domain import JSON, ChannelPattern, Identity
from ..domain.channel import is_valid_name
from ..domain.errors import (
    ConfigurationError,
    InvalidPattern,
    InvalidToken,
    SecretTooShort,
    TokenExpired,
    TokenSecretMissing,
)

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
"""Bytes: the secret's length in UTF-8 (the key HS256 is given)."""


def check_secret(secret: str, variable: str = "REALTIME_SECRET") -> None:
    """Raise ``SecretTooShort`` (a ``ConfigurationError``) for a secret under the minimum."""
    length = len(secret.encode())
    if length < MIN_SECRET_LENGTH:
        raise SecretTooShort(variable, length, MIN_SECRET_LENGTH)


def new_secret() -> str:
    """A fresh random secret: 48 random bytes as 64 URL-safe characters (``tidings secret``)."""
    return secrets.token_urlsafe(48)


class JwtTokens:
    """Issues and verifies connection tokens (implements ``TokenIssuer`` and ``TokenVerifier``).

    Tokens are issued with ``secret``; they verify with ``secret`` or any of ``also_accept`` (a
    demo gateway accepts the tokens of its own demo key beside the application's). ``max_ttl``
    (seconds) is the longest lifetime a token may have. Raises ``SecretTooShort`` for a key under
    ``MIN_SECRET_LENGTH`` bytes; an empty or missing ``secret`` means tokens cannot be issued.
    """

    def __init__(
        self,
        secret: str | None,
        *,
        max_ttl: float | None = None,
        also_accept: Sequence[str] = (),
    ) -> None:
        if secret:
            check_secret(secret)
        for key in also_accept:
            check_secret(key, "a verification key")
        if max_ttl is not None and not max_ttl > 0:
            raise ConfigurationError(
                f"REALTIME_MAX_TOKEN_TTL must be a positive number of seconds, not {max_ttl!r}"
            )
        self._secret = secret or None
        self._keys = tuple(key for key in (secret, *also_accept) if key)
        self._max_ttl = max_ttl

    def _key(self) -> str:
        if not self._secret:
            raise TokenSecretMissing()
        return self._secret

    def issue(
        self,
        user_id: str,
        *,
        info: JSON = None,
        ttl: float = 3600,
        channels: Sequence[str] = (),
    ) -> str:
        if (
            not isinstance(user_id, str)
            or not is_valid_name(f"user.{user_id}")
            or len(user_id) > 128
        ):
            raise ValueError(
                f"user id {user_id!r} must be 1 to 128 letters, digits or '_-=@,;:.' with no "
                "empty part between dots, so that its channel user.{id} is valid"
            )
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        if self._max_ttl is not None and ttl > self._max_ttl:
            raise ValueError(
                f"ttl {ttl:g} s is longer than REALTIME_MAX_TOKEN_TTL ({self._max_ttl:g} s)"
            )
        for pattern in channels:
            ChannelPattern(pattern)  # refuse a grant the gateway could never match
        now = int(time.time())
        claims: dict[str, JSON] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
        if info is not None:
            claims["info"] = info
        if channels:
            claims["channels"] = list(channels)
        return jwt.encode(claims, self._key(), algorithm=ALGORITHM)

    def verify(self, token: str) -> Identity:
        """The identity ``token`` proves; raises ``TokenExpired`` or else ``InvalidToken``."""
        if not self._keys:
            raise TokenSecretMissing()
        for key in self._keys:
            try:
                claims = self._decode(token, key)
            except jwt.InvalidSignatureError:
                continue
            return self._identity(claims)
        raise InvalidToken("token signature does not match REALTIME_SECRET")

    def _decode(self, token: str, key: str) -> dict[str, Any]:
        """The claims of ``token`` if ``key`` signed it; ``InvalidSignatureError`` if not."""
        required = ["sub", "exp"] if self._max_ttl is None else ["sub", "exp", "iat"]
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[ALGORITHM], options={"require": required}
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token has expired") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"token algorithm is not {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            needed = (
                f", which REALTIME_MAX_TOKEN_TTL ({self._max_ttl:g} s) requires"
                if exc.claim == "iat"
                else ""
            )
            raise InvalidToken(f"token lacks the {exc.claim!r} claim{needed}") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"token is malformed: {exc}") from None
        if self._max_ttl is not None:
            lifetime = float(claims["exp"]) - float(claims["iat"])
            if lifetime > self._max_ttl:
                raise InvalidToken(
                    f"token lives {lifetime:g} s, longer than REALTIME_MAX_TOKEN_TTL "
                    f"({self._max_ttl:g} s): issue shorter-lived tokens"
                )
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token subject (user id) must be a non-empty string")
        if len(subject) > 128 or not is_valid_name(f"user.{subject}"):
            raise InvalidToken(f"token subject {subject[:40]!r} is not a valid user id")
        info = claims.get("info")
        try:
            json.dumps(info, ensure_ascii=False).encode()
        except (ValueError, RecursionError):
            raise InvalidToken("token 'info' is not encodable JSON") from None
        grants = claims.get("channels", [])
        if not isinstance(grants, list):
            raise InvalidToken("token 'channels' claim must be a list of channel patterns")
        try:
            patterns = tuple(ChannelPattern(grant) for grant in grants)
        except InvalidPattern as exc:
            raise InvalidToken(f"token grants an invalid pattern: {exc}") from None
        return Identity(
            user_id=subject,
            user_info=info,
            grants=patterns,
            expires_at=float(claims["exp"]),
        )
