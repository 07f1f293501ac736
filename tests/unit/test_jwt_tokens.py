"""Connection tokens: issued and verified with REALTIME_SECRET, every forgery refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import jwt
import pytest

from tidings import InvalidToken, TokenSecretMissing
from tidings.adapters.jwt_tokens import JwtTokens
from tidings.domain import ChannelPattern

SECRET = "s" * 32


def test_issue_then_verify_round_trips_the_claims() -> None:
    tokens = JwtTokens(SECRET)
    token = tokens.issue("42", info={"name": "Ann"}, ttl=60, channels=("private-team.*",))
    identity = tokens.verify(token)
    assert identity.user_id == "42"
    assert identity.user_info == {"name": "Ann"}
    assert identity.grants == (ChannelPattern("private-team.*"),)
    assert identity.expires_at is not None and identity.expires_at > time.time()


def _forge(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # Makers, not tokens: times are taken when the test runs, not when this module is imported.
        (lambda: jwt.encode({"sub": "1", "exp": int(time.time()) - 5}, SECRET, "HS256"), "expired"),
        (
            lambda: jwt.encode(
                {"sub": "1", "exp": int(time.time()) + 86_400}, "other" * 8, "HS256"
            ),
            "signature",
        ),
        (
            lambda: _forge(
                {"sub": "1", "exp": int(time.time()) + 86_400}, {"alg": "none", "typ": "JWT"}
            ),
            "algorithm",
        ),
        (
            lambda: jwt.encode({"sub": "1", "exp": int(time.time()) + 86_400}, SECRET * 2, "HS512"),
            "algorithm",
        ),
        (lambda: jwt.encode({"exp": int(time.time()) + 86_400}, SECRET, "HS256"), "'sub'"),
        (lambda: jwt.encode({"sub": "1"}, SECRET, "HS256"), "'exp'"),
        (
            lambda: jwt.encode({"sub": "", "exp": int(time.time()) + 86_400}, SECRET, "HS256"),
            "subject",
        ),
        (
            lambda: jwt.encode(
                {"sub": "1", "exp": int(time.time()) + 86_400, "channels": ["a b"]}, SECRET, "HS256"
            ),
            "invalid pattern",
        ),
        (lambda: "not.a.token", "malformed"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(make: Callable[[], str], reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        JwtTokens(SECRET).verify(make())


def test_tampered_claims_break_the_signature() -> None:
    token = JwtTokens(SECRET).issue("1")
    head, claims, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["sub"] = "2"
    forged_claims = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        JwtTokens(SECRET).verify(f"{head}.{forged_claims}.{signature}")


def test_without_a_secret_nothing_is_signed_or_trusted() -> None:
    with pytest.raises(TokenSecretMissing, match="REALTIME_SECRET"):
        JwtTokens(None).issue("1")
    with pytest.raises(TokenSecretMissing):
        JwtTokens(None).verify("x.y.z")


def test_issue_refuses_bad_arguments() -> None:
    tokens = JwtTokens(SECRET)
    with pytest.raises(ValueError, match="user id"):
        tokens.issue("")
    with pytest.raises(ValueError, match="ttl"):
        tokens.issue("1", ttl=0)
    with pytest.raises(ValueError, match="pattern"):
        tokens.issue("1", channels=("bad pattern",))
