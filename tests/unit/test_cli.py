"""The tidings command: help everywhere, exit 2 for bad arguments, what each command prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tidings.adapters.jwt_tokens import JwtTokens
from tidings.entrypoints.cli import cli

SECRET = "cli-secret-" + "y" * 32


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["config"],
        ["token"],
        ["publish"],
        ["kafka"],
        ["kafka", "consume"],
        ["kafka", "topics"],
        ["kafka", "lag"],
    ],
)
def test_help_everywhere(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nonsense"], "No such command"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--broker", "redis"], "'redis' is not one of 'memory', 'kafka'"),
        (["token", "1", "--info", "{not json"], "--info is not valid JSON"),
        (["token", "1", "--ttl", "0"], "--ttl"),
        (["publish", "public.x", "e", "{bad"], "DATA is not valid JSON"),
        (["kafka", "consume"], "Missing option '--channels'"),
        (["kafka", "consume", "--channels", "bad channel"], "invalid channel 'bad channel'"),
        (["kafka", "consume", "--channels", "a", "--broker", "redis"], "'redis' is not one of"),
        (["kafka", "consume", "--channels", "a", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_bad_configuration_exits_2_naming_the_variable(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_WS_PORT", "not-a-port")
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 2
    assert "REALTIME_WS_PORT" in result.output


def test_config_shows_settings_with_secrets_masked(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "do-not-print-me")
    monkeypatch.setenv("KAFKA_BROKERS", "k1:9092,k2:9092")
    result = runner.invoke(cli, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["KAFKA_BROKERS"] == "k1:9092,k2:9092"
    assert shown["KAFKA_TOPIC_PREFIX"] == "realtime"
    assert shown["REALTIME_SECRET"] == "********"
    assert "do-not-print-me" not in result.output
    table = runner.invoke(cli, ["config"]).output
    assert "KAFKA_CONSUMER_GROUP" in table and "realtime-servers" in table


def test_token_is_signed_with_the_secret(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", SECRET)
    result = runner.invoke(
        cli,
        [
            "token",
            "42",
            "--info",
            '{"name":"Ann"}',
            "--ttl",
            "120",
            "--channels",
            "private-team.*,presence-chat.**",
        ],
    )
    assert result.exit_code == 0, result.output
    identity = JwtTokens(SECRET).verify(result.output.strip())
    assert identity.user_id == "42" and identity.user_info == {"name": "Ann"}
    assert [str(grant) for grant in identity.grants] == ["private-team.*", "presence-chat.**"]


def test_token_without_secret_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["token", "42"])
    assert result.exit_code == 2
    assert "REALTIME_SECRET is not set" in result.output


def test_publish_on_the_memory_broker_prints_the_envelope(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "public.news", "announcement", '{"title":"Hi"}'])
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.output)
    assert envelope["channel"] == "public.news" and envelope["data"] == {"title": "Hi"}
    assert envelope["type"] == "event" and envelope["position"]


def test_publish_through_an_unreachable_gateway_fails_clearly(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "public.x", "e", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "no broker reachable at http://127.0.0.1:9" in result.output


def test_publish_with_a_url_that_is_not_one_names_the_setting(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "public.x", "e", "--url", "127.0.0.1:6001"])
    assert result.exit_code == 2
    assert "REALTIME_GATEWAY_URL" in result.output and "'127.0.0.1:6001'" in result.output


def test_publish_on_the_gateway_broker_without_its_url_names_it(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_BROKER", "gateway")
    result = runner.invoke(cli, ["publish", "public.x", "e"])
    assert result.exit_code == 2
    assert "set REALTIME_GATEWAY_URL" in result.output


@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_refuses_the_gateway_broker_in_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args = ["serve", "--port", "0"]
    if how == "option":
        args += ["--broker", "gateway"]
    else:
        monkeypatch.setenv("REALTIME_BROKER", "gateway")
        monkeypatch.setenv("REALTIME_GATEWAY_URL", "http://127.0.0.1:6001")
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert "a gateway cannot be fed by another gateway's HTTP API" in line


def test_console_script_is_installed() -> None:
    tidings = Path(sys.executable).with_name("tidings")
    result = subprocess.run(
        [str(tidings), "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "0.1.0" in result.stdout


@pytest.mark.parametrize(("key", "said"), [(True, False), (False, True)])
def test_the_start_banner_says_when_http_publishing_is_off(
    capsys: pytest.CaptureFixture[str], key: bool, said: bool
) -> None:
    from tidings.entrypoints.serve import announce

    announce("http://127.0.0.1:6001", "n1", "memory", True, http_publishing=key)
    line = next(line for line in capsys.readouterr().out.splitlines() if "/broadcast" in line)
    assert ("off: start with REALTIME_API_KEY" in line) is said, line
