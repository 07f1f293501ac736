"""Connection tokens as HS256 JSON Web Tokens, signed with ``REALTIME_SECRET`` (PyJWT).

Claims: ``sub`` the user id, ``exp`` the expiry, ``iat`` the issue time, optional ``info`` (user
info shown to presence members) and ``channels`` (patterns the holder may join). Only HS256 is
accepted when verifying, so ``alg=none`` and tokens signed with another algorithm are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import jwt

from ..domain import JSON, ChannelPattern, Identity
from ..domain.channel import is_valid_name
from ..domain.errors import InvalidPattern, InvalidToken, TokenSecretMissing

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 16


class JwtTokens:
    """Issues and verifies connection tokens (implements ``TokenIssuer`` and ``TokenVerifier``)."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

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
        if ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
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
        key = self._key()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature does not match REALTIME_SECRET") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"token algorithm is not {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"token is malformed: {exc}") from None
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
