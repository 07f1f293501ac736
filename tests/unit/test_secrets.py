"""Token secrets: short ones refused, `tidings secret` makes good ones, lifetimes bounded."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import trio
from click.testing import CliRunner

from tests.support.processes import TIDINGS, Gateway, process_env
from tests.support.wsclient import connect
from tidings.adapters.jwt_tokens import MIN_SECRET_LENGTH, JwtTokens, new_secret
from tidings.config import Settings
from tidings.domain.errors import (
    ConfigurationError,
    InvalidToken,
    SecretTooShort,
    TokenExpired,
    TokenSecretMissing,
)
from tidings.entrypoints.cli import cli

SECRET = "unit-secret-" + "z" * 32
OTHER = "other-secret-" + "w" * 32


def _claims(**claims: object) -> str:
    return jwt.encode(dict(claims), SECRET, algorithm="HS256")


# -- The minimum length --------------------------------------------------------------------------


def test_the_minimum_is_32_bytes() -> None:
    assert MIN_SECRET_LENGTH == 32
    JwtTokens("k" * 32)
    with pytest.raises(SecretTooShort):
        JwtTokens("k" * 31)


@pytest.mark.parametrize("secret", ["abc", "s" * 31, "é" * 15])
def test_a_short_secret_is_refused_naming_the_variable_its_length_and_the_cure(
    secret: str,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        JwtTokens(secret)
    message = str(caught.value)
    assert "REALTIME_SECRET" in message
    assert f"is {len(secret.encode())} bytes long" in message
    assert "at least 32 bytes" in message
    assert "tidings secret" in message
    assert "secrets.token_urlsafe(48)" in message


def test_the_length_is_counted_in_bytes() -> None:
    JwtTokens("é" * 16)  # 16 characters, 32 bytes


def test_a_missing_secret_still_builds_and_says_so_when_used() -> None:
    tokens = JwtTokens(None)
    with pytest.raises(TokenSecretMissing):
        tokens.issue("1")
    with pytest.raises(TokenSecretMissing):
        tokens.verify("x.y.z")


def test_new_secrets_are_long_enough_and_differ() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(first.encode()) >= MIN_SECRET_LENGTH
    JwtTokens(first)


def test_tidings_secret_prints_a_secret_that_tokens_accept(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["secret"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    assert len(secret.encode()) >= MIN_SECRET_LENGTH
    tokens = JwtTokens(secret)
    assert tokens.verify(tokens.issue("7")).user_id == "7"
    assert runner.invoke(cli, ["secret"]).output.strip() != secret


def test_tidings_token_refuses_a_short_secret_with_status_2(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "abc")
    result = runner.invoke(cli, ["token", "1"])
    assert result.exit_code == 2, result.output
    assert "REALTIME_SECRET is 3 bytes long" in result.output
    assert "tidings secret" in result.output


def test_tidings_config_shows_a_short_secret_as_a_problem(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "abc")
    result = runner.invoke(cli, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["REALTIME_SECRET"] == "********"
    assert any("REALTIME_SECRET is 3 bytes long" in problem for problem in shown["(problems)"])
    assert "abc" not in result.output.replace("abcdef", "")


def test_a_good_secret_has_no_problem(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_SECRET", SECRET)
    assert Settings.load(env_file=None).problems() == []


# -- Expiry travels as a type --------------------------------------------------------------------


def test_an_expired_token_raises_token_expired() -> None:
    now = int(time.time())
    with pytest.raises(TokenExpired, match="expired"):
        JwtTokens(SECRET).verify(_claims(sub="1", iat=now - 100, exp=now - 50))


def test_other_bad_tokens_are_not_token_expired() -> None:
    token = JwtTokens(OTHER).issue("1")
    with pytest.raises(InvalidToken) as caught:
        JwtTokens(SECRET).verify(token)
    assert not isinstance(caught.value, TokenExpired)


# -- More than one verification key --------------------------------------------------------------


def test_tokens_verify_with_the_secret_or_an_accepted_key() -> None:
    both = JwtTokens(SECRET, also_accept=(OTHER,))
    assert both.verify(JwtTokens(SECRET).issue("1")).user_id == "1"
    assert both.verify(JwtTokens(OTHER).issue("2")).user_id == "2"
    assert JwtTokens(SECRET).verify(both.issue("3")).user_id == "3"  # issued with the secret
    with pytest.raises(InvalidToken, match="signature"):
        JwtTokens(SECRET).verify(JwtTokens(OTHER).issue("2"))


def test_an_expired_token_of_an_accepted_key_is_expired_not_forged() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "1", "iat": now - 100, "exp": now - 50}, OTHER, algorithm="HS256")
    with pytest.raises(TokenExpired):
        JwtTokens(SECRET, also_accept=(OTHER,)).verify(token)


def test_accepted_keys_must_be_long_enough_too() -> None:
    with pytest.raises(SecretTooShort):
        JwtTokens(SECRET, also_accept=("short",))


def test_without_a_secret_an_accepted_key_still_verifies() -> None:
    assert JwtTokens(None, also_accept=(OTHER,)).verify(JwtTokens(OTHER).issue("4")).user_id == "4"


# -- The longest lifetime ------------------------------------------------------------------------


def test_issue_refuses_a_ttl_over_the_maximum() -> None:
    tokens = JwtTokens(SECRET, max_ttl=600)
    assert tokens.verify(tokens.issue("1", ttl=600)).user_id == "1"
    with pytest.raises(
        ValueError, match=r"ttl 601 s is longer than REALTIME_MAX_TOKEN_TTL \(600 s\)"
    ):
        tokens.issue("1", ttl=601)


def test_verify_refuses_a_token_that_lives_too_long() -> None:
    now = int(time.time())
    token = _claims(sub="1", iat=now, exp=now + 3600)
    assert JwtTokens(SECRET).verify(token).user_id == "1"
    with pytest.raises(InvalidToken, match=r"lives 3600 s, longer than REALTIME_MAX_TOKEN_TTL"):
        JwtTokens(SECRET, max_ttl=600).verify(token)


def test_verify_refuses_a_token_without_iat_when_a_maximum_is_set() -> None:
    token = _claims(sub="1", exp=int(time.time()) + 60)
    assert JwtTokens(SECRET).verify(token).user_id == "1"
    with pytest.raises(InvalidToken, match=r"lacks the 'iat' claim.*REALTIME_MAX_TOKEN_TTL"):
        JwtTokens(SECRET, max_ttl=600).verify(token)


def test_the_maximum_comes_from_the_environment(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", SECRET)
    monkeypatch.setenv("REALTIME_MAX_TOKEN_TTL", "600")
    refused = runner.invoke(cli, ["token", "1", "--ttl", "3600"])
    assert refused.exit_code == 2, refused.output
    assert "REALTIME_MAX_TOKEN_TTL (600 s)" in refused.output
    issued = runner.invoke(cli, ["token", "1", "--ttl", "600"])
    assert issued.exit_code == 0, issued.output
    JwtTokens(SECRET, max_ttl=600).verify(issued.output.strip())


def test_a_bad_maximum_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REALTIME_MAX_TOKEN_TTL", "-5")
    with pytest.raises(ConfigurationError, match="REALTIME_MAX_TOKEN_TTL"):
        Settings.load()


# -- The commands, as processes ------------------------------------------------------------------


def test_tidings_serve_refuses_a_short_secret_before_listening() -> None:
    result = subprocess.run(
        [TIDINGS, "serve", "--port", "0"],
        env=process_env(REALTIME_SECRET="abc", REALTIME_BROKER="memory"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "demo page" not in result.stdout
    assert "REALTIME_SECRET is 3 bytes long" in result.stderr
    assert "at least 32 bytes" in result.stderr
    assert "tidings secret" in result.stderr and "token_urlsafe(48)" in result.stderr


async def test_a_secret_from_tidings_secret_serves_tokens_from_tidings_token() -> None:
    made = await trio.run_process([TIDINGS, "secret"], capture_stdout=True)
    env = process_env(REALTIME_SECRET=made.stdout.decode().strip(), REALTIME_BROKER="memory")
    gateway = Gateway(env)
    try:
        issued = await trio.run_process([TIDINGS, "token", "8"], env=env, capture_stdout=True)
        async with connect(gateway.ws_url, issued.stdout.decode().strip()) as client:
            assert client.connected["type"] == "connected", client.connected
            assert client.connected["data"]["user_id"] == "8"
    finally:
        assert gateway.stop() == 0, gateway.output()
