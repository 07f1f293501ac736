"""Every failure of the tidings command is one line on stderr that names the cause and what to do.

The commands run for real (the console script) against a Kafka that is not there: a local port
that was just closed, so no broker is needed and each run is bounded by ``KAFKA_TIMEOUT``. Before
this, a busy port, or Kafka unreachable from ``serve`` or ``kafka consume``, printed 118-124
lines of trio's exception group, and a test looking for the message in them passed anyway.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from tidings.adapters.outbox import SqliteOutbox
from tidings.domain import Message
from tidings.domain.errors import BrokerUnavailable, ConfigurationError, InvalidChannel
from tidings.entrypoints.cli import cli
from tidings.entrypoints.common import explain

from ..support.processes import TIDINGS, Gateway, process_env

KAFKA_TIMEOUT = 0.3
"""Seconds each command may wait for the closed port (``KAFKA_TIMEOUT``)."""

BOUND = 30
"""Seconds a command may take to fail, at most: a few KAFKA_TIMEOUTs and the interpreter."""


@attrs.frozen
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def describe(self) -> str:
        return (
            f"tidings {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def run(cwd: Path, *args: str, **env: str) -> Run:
    """The console script with ``args`` in ``cwd`` (no stray .env), only ``env`` set of tidings'
    variables; it must end within ``BOUND`` seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [TIDINGS, *args],
        env=process_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BOUND + 30,
        check=False,
    )
    return Run(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def assert_one_line(result: Run, status: int, *expected: str) -> str:
    """The run failed with ``status`` and exactly one line on stderr, ``tidings: ...``, holding
    each of ``expected``; returns that line."""
    assert result.code == status, result.describe()
    assert len(result.err_lines) == 1, result.describe()
    line = result.err_lines[0]
    assert line.startswith("tidings: "), result.describe()
    for text in expected:
        assert text in line, result.describe()
    assert result.seconds < BOUND, result.describe()
    return line


@pytest.fixture
def no_kafka(closed_port: int) -> dict[str, str]:
    """The environment of a command whose Kafka is the closed port."""
    return {
        "REALTIME_BROKER": "kafka",
        "KAFKA_BROKERS": f"127.0.0.1:{closed_port}",
        "KAFKA_TIMEOUT": str(KAFKA_TIMEOUT),
    }


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A local port something listens on for the length of the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- Kafka unreachable: exit 1, one line naming the brokers and what to do -----------------------


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "0"),
        ("publish", "chat.1", "hello", '{"n": 1}'),
        ("kafka", "consume", "--channels", "chat.1"),
        ("kafka", "consume", "--channels", "chat.1", "--group-mode", "fanout"),
        ("kafka", "topics"),
        ("kafka", "lag"),
        ("kafka", "create-topics", "chat.1"),
    ],
    ids=["serve", "publish", "consume", "consume-fanout", "topics", "lag", "create-topics"],
)
def test_every_command_on_an_unreachable_kafka_fails_in_one_line(
    tmp_path: Path, no_kafka: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run(tmp_path, *args, **no_kafka)
    assert_one_line(
        result, 1, f"no broker reachable at {no_kafka['KAFKA_BROKERS']}", "KAFKA_BROKERS"
    )
    assert result.stdout == "", result.describe()


def test_publish_to_an_unreachable_gateway_fails_in_one_line_naming_its_url(
    tmp_path: Path, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = run(tmp_path, "publish", "chat.1", "hello", '{"n": 1}', "--url", url)
    line = assert_one_line(result, 1, f"no broker reachable at {url}", "REALTIME_GATEWAY_URL")
    assert "KAFKA_BROKERS" not in line, result.describe()
    assert result.stdout == "", result.describe()


@pytest.mark.parametrize("broker_env", ["memory"], indirect=True)
def test_publish_refused_by_a_gateway_is_one_line_naming_the_key(
    tmp_path: Path, live_gateway: Gateway
) -> None:
    """The gateway answers (403, a wrong key): one line, and not httpx's record of the request."""
    result = run(
        tmp_path, "publish", "chat.1", "hello", "{}", "--url", live_gateway.url,
        REALTIME_API_KEY="not-the-gateway-key",
    )  # fmt: skip
    assert_one_line(result, 2, f"the gateway at {live_gateway.url} refused", "REALTIME_API_KEY")


def test_outbox_flush_on_an_unreachable_kafka_fails_in_one_line(
    tmp_path: Path, no_kafka: dict[str, str]
) -> None:
    path = tmp_path / "outbox.db"
    store = SqliteOutbox(path)
    store.add(Message.event("chat.1", "hello", {"n": 1}))
    store.close()
    broker = no_kafka["KAFKA_BROKERS"]
    result = run(
        tmp_path, "outbox", "flush", "--timeout", "1", REALTIME_OUTBOX=str(path), **no_kafka
    )
    line = assert_one_line(
        result, 1, "1 message(s) still in the outbox after 1s: ", f"no broker reachable at {broker}"
    )
    assert "KAFKA_BROKERS" in line and "then flush again" in line
    assert result.stdout == "1 message(s) still waiting\n", result.describe()


def test_debug_shows_the_traceback_before_the_line(
    tmp_path: Path, no_kafka: dict[str, str]
) -> None:
    result = run(tmp_path, "--log-level", "debug", "publish", "chat.1", "hello", **no_kafka)
    assert result.code == 1, result.describe()
    assert "Traceback (most recent call last)" in result.stderr, result.describe()
    assert "BrokerUnavailable" in result.stderr, result.describe()
    assert result.err_lines[-1].startswith("tidings: no broker reachable at"), result.describe()


def test_kafka_python_says_little_about_a_failed_publish(
    tmp_path: Path, no_kafka: dict[str, str]
) -> None:
    """At the default level the one line is all; at debug, kafka-python's own records show
    what the logging setup keeps back (its retries, one line each)."""
    quiet = run(tmp_path, "publish", "chat.1", "hello", **no_kafka)
    assert len(quiet.err_lines) == 1, quiet.describe()
    loud = run(tmp_path, "--log-level", "debug", "publish", "chat.1", "hello", **no_kafka)
    from_kafka = [line for line in loud.err_lines if " kafka." in line]
    assert len(from_kafka) > 3, loud.describe()


# -- A busy port -------------------------------------------------------------------------------


def test_serve_on_a_busy_port_fails_in_one_line(tmp_path: Path, busy_port: int) -> None:
    result = run(tmp_path, "serve", "--port", str(busy_port), REALTIME_BROKER="memory")
    line = assert_one_line(result, 1, f"cannot listen on 127.0.0.1:{busy_port}", "--port")
    assert "in use" in line.lower(), result.describe()
    assert "demo page" not in result.stdout


# -- Bad configuration and arguments: exit 2, one line naming what was wrong ---------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KAFKA_BROKERS", "not-a-host-port", "KAFKA_BROKERS: 'not-a-host-port' is not host:port"),
        ("KAFKA_BROKERS", "k1:9092,k2", "'k2' is not host:port"),
        ("KAFKA_BROKERS", "k1:99999", "'k1:99999' is not host:port"),
        ("KAFKA_PRODUCER_SETTINGS", "lingr.ms=5", "did you mean linger.ms?"),
        ("KAFKA_CONSUMER_SETTINGS", "enable.auto.commit=false", "enable.auto.commit cannot be set"),
        ("REALTIME_WS_PORT", "not-a-port", "REALTIME_WS_PORT"),
        ("KAFKA_CONSUMER_ASSIGNOR", "fair", "unknown assignor 'fair'; known assignors"),
    ],
)
def test_config_refuses_a_bad_value_in_one_line_naming_it(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = run(tmp_path, "config", **{variable: value})
    assert_one_line(result, 2, variable, expected, "tidings config --check")


def test_a_refused_value_does_not_show_a_password_it_holds(tmp_path: Path) -> None:
    result = run(
        tmp_path, "config", KAFKA_PRODUCER_SETTINGS="sasl.plain.password=hunter2,linger.ms"
    )
    assert_one_line(result, 2, "KAFKA_PRODUCER_SETTINGS", "'linger.ms' is not of the form")
    assert "hunter2" not in result.stderr


def test_serve_with_a_short_secret_fails_in_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", "0", REALTIME_SECRET="abc", REALTIME_BROKER="memory")
    assert_one_line(result, 2, "REALTIME_SECRET is 3 bytes long", "tidings secret")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["publish", "public.x", "e", "{bad"], "DATA is not valid JSON"),
        (["token", "1", "--info", "{bad"], "--info is not valid JSON"),
        (["publish", "bad channel", "e"], "invalid channel 'bad channel'"),
        (["kafka", "consume", "--channels", "bad channel"], "invalid channel 'bad channel'"),
        (["kafka", "create-topics", "no/slash"], "invalid channel 'no/slash'"),
        (["kafka", "consume"], "Missing option '--channels'"),
        (["kafka", "consume", "--channels", "a", "--assignor", "fair"], "'fair' is not one of"),
        (["serve", "--port", "70000"], "--port"),
        (["nonsense"], "No such command 'nonsense'"),
        (["--log-level", "loud", "config"], "'loud' is not one of"),
        (["config", "--check", "--json"], "give one of --check, --json"),
    ],
)
def test_a_bad_argument_is_one_line_pointing_at_the_help(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tidings: ") and expected in lines[0], lines[0]
    assert lines[0].endswith("--help`") and ".;" not in lines[0], lines[0]
    assert result.stdout == ""


def test_a_short_secret_for_a_token_is_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "abc")
    result = runner.invoke(cli, ["token", "1"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "REALTIME_SECRET is 3 bytes long" in result.stderr


# -- tidings config --check ----------------------------------------------------------------------


def test_config_check_passes_on_good_values(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "--check"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("ok  ") for line in lines), result.stdout
    checked = {line.split()[1].rstrip(":") for line in lines}
    assert {
        "KAFKA_BROKERS",
        "KAFKA_PRODUCER_SETTINGS",
        "KAFKA_CONSUMER_ASSIGNOR",
        "REALTIME_SECRET",
        "Kafka",
    } <= checked
    assert "not asked: REALTIME_BROKER is memory" in result.stdout


def test_config_check_fails_each_bad_value_on_its_own_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "not-a-host-port")
    monkeypatch.setenv("REALTIME_WS_PORT", "x")
    result = runner.invoke(cli, ["config", "--check"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed] == ["KAFKA_BROKERS:", "REALTIME_WS_PORT:"], (
        result.stdout
    )
    assert any("'not-a-host-port' is not host:port" in line for line in failed), result.stdout
    assert result.stderr.splitlines() == ["tidings: 2 check(s) failed; see the FAIL line(s) above"]


def test_config_check_fails_a_misspelt_kafka_setting(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PRODUCER_SETTINGS", "lingr.ms=5")
    result = runner.invoke(cli, ["config", "--check"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith("FAIL  KAFKA_PRODUCER_SETTINGS: unknown Kafka setting 'lingr.ms'")
    assert "did you mean linger.ms?" in failed[0]


def test_config_check_fails_a_short_secret(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "abc")
    result = runner.invoke(cli, ["config", "--check"])
    assert result.exit_code == 1, result.output
    assert "FAIL  REALTIME_SECRET: REALTIME_SECRET is 3 bytes long" in result.stdout


def test_config_check_says_which_brokers_did_not_answer(
    tmp_path: Path, no_kafka: dict[str, str]
) -> None:
    broker = no_kafka["KAFKA_BROKERS"]
    result = run(tmp_path, "config", "--check", **no_kafka)
    assert result.code == 1, result.describe()
    assert f"FAIL  Kafka at {broker}: no answer within {KAFKA_TIMEOUT}s: " in result.stdout, (
        result.describe()
    )
    assert [line for line in result.stdout.splitlines() if line.startswith("FAIL")] == [
        line for line in result.stdout.splitlines() if f"Kafka at {broker}" in line
    ]
    assert_one_line(result, 1, "1 check(s) failed")


def test_config_check_says_which_host_does_not_resolve(tmp_path: Path) -> None:
    """``.invalid`` never resolves (RFC 2606); kafka-python would only have timed out."""
    env = {"REALTIME_BROKER": "kafka", "KAFKA_BROKERS": "kafka.invalid:9092", "KAFKA_TIMEOUT": "1"}
    result = run(tmp_path, "config", "--check", **env)
    assert result.code == 1, result.describe()
    assert "FAIL  Kafka at kafka.invalid:9092: kafka.invalid does not resolve: " in result.stdout, (
        result.describe()
    )
    assert_one_line(result, 1, "1 check(s) failed")


# -- The table of causes -------------------------------------------------------------------------


def test_explain_tells_the_first_error_of_a_group() -> None:
    unreachable = BrokerUnavailable(["k1:9092"], "Kafka did not answer")
    group = ExceptionGroup("trio", [ExceptionGroup("nursery", [unreachable])])
    line, status = explain(group)
    assert status == 1
    assert line.startswith("no broker reachable at k1:9092: Kafka did not answer; ")
    assert "KAFKA_BROKERS" in line


@pytest.mark.parametrize(
    ("error", "status", "start"),
    [
        (ConfigurationError("KAFKA_X: bad"), 2, "KAFKA_X: bad; fix it in the environment"),
        (InvalidChannel("a b", "spaces"), 2, "invalid channel 'a b': spaces; see `tidings p"),
        (OSError(98, "Address already in use"), 1, "Address already in use; "),
        (RuntimeError("boom"), 1, "unexpected RuntimeError: boom; run with --log-level debug"),
    ],
)
def test_explain_gives_a_line_and_a_status_for_each_kind_of_failure(
    error: BaseException, status: int, start: str
) -> None:
    line, code = explain(error, "tidings publish")
    assert code == status
    assert line.startswith(start), line
    assert "\n" not in line
