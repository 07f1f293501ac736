"""What every ``tidings`` command shares: settings from the environment, failing with one line,
JSON arguments, and a container whose resources are released however the command ends.

Every failure is one line on stderr, ``tidings: <cause>; <what to do>`` (``explain`` turns an
exception into it), with the traceback before it at ``--log-level debug``. Bad arguments and bad
configuration exit with status 2; everything else (an unreachable broker, a busy port) with 1.
The command modules (``cli``, ``kafka_cli``, ``subscribe_cli``) import this one and not each
other, except that ``cli`` registers the ``kafka`` group and the ``subscribe`` command.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..config import Settings
from ..domain.errors import (
    BrokerOverloaded,
    BrokerUnavailable,
    ConfigurationError,
    SecretTooShort,
    TidingsError,
    TokenSecretMissing,
)
from .logs import as_json_line, debugging, name_brokers, use_log_format

if TYPE_CHECKING:
    from ..bootstrap import Container

CONFIGURATION_HINT = (
    "fix it in the environment or .env (`tidings config --check` checks every value)"
)
BROKER_HINT = (
    "start Kafka there or set KAFKA_BROKERS to where it runs "
    "(`tidings config --check` tries each broker)"
)
GATEWAY_HINT = "start the gateway there or set REALTIME_GATEWAY_URL to where it runs"


def first_leaf(error: BaseException) -> BaseException:
    """The first exception in a (possibly nested) exception group: what to tell the user."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def explain(error: BaseException, command: str = "tidings") -> tuple[str, int]:
    """The line that tells the user what went wrong and what to do, and the exit status;
    ``command`` (``tidings publish``) is the one whose help to point at.

    Trio raises a task's error inside an exception group; the first error in it is the one told.
    """
    error = first_leaf(error)
    message = str(error) or type(error).__name__
    if isinstance(error, SecretTooShort | TokenSecretMissing):
        return message, 2  # their messages say what to do
    if isinstance(error, ConfigurationError):
        return f"{message}; {CONFIGURATION_HINT}", 2
    if isinstance(error, BrokerUnavailable):
        through_gateway = error.brokers and all(
            broker.startswith(("http://", "https://")) for broker in error.brokers
        )  # REALTIME_BROKER=gateway names its URL; Kafka brokers are host:port
        return f"{message}; {GATEWAY_HINT if through_gateway else BROKER_HINT}", 1
    if isinstance(error, BrokerOverloaded):
        return f"{message}; publish less at once, or wait until Kafka catches up", 1
    if isinstance(error, TidingsError) and isinstance(error, ValueError):
        return f"{message}; see `{command} --help`", 2  # a bad channel name, a bad message
    if isinstance(error, TidingsError):
        return message, 1
    if isinstance(error, OSError):
        return f"{error.strerror or message}; check the address and that nothing else holds it", 1
    return (
        f"unexpected {type(error).__name__}: {message}; run with --log-level debug for the "
        "traceback, and please report it",
        1,
    )


def fail(message: str, status: int = 2, *, error: BaseException | None = None) -> NoReturn:
    """Tell the user what went wrong, in one line on stderr, and exit with ``status``.

    At ``--log-level debug`` the traceback of ``error`` comes first.
    """
    debug = error is not None and debugging()
    line = as_json_line(f"tidings: {message}", error if debug else None)
    if line is not None:  # REALTIME_LOG_FORMAT=json: this line too, traceback inside
        click.echo(line, err=True)
        sys.exit(status)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    click.echo(f"tidings: {message}", err=True)
    sys.exit(status)


def fail_with(error: BaseException, command: str = "tidings") -> NoReturn:
    """``fail`` with the line and status ``explain`` gives for ``error``."""
    message, status = explain(error, command)
    fail(message, status, error=error)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with command-line values on top (None: not
    given). A bad value exits 2 naming its variable."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings.load(**given)
    except ConfigurationError as exc:
        fail_with(exc)
    use_log_format(settings.realtime_log_format)
    name_brokers(settings.broker_list)
    return settings


def json_argument(text: str | None, what: str) -> Any:
    """``text`` decoded as JSON (None stays None), or a usage error naming the argument."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


@contextmanager
def container_for(settings: Settings) -> Iterator[Container]:
    """The composition root on ``settings``, its resources shut down when the block ends.

    What the block raises is left to the command group (``cli.TidingsGroup``), which tells it
    in one line (``explain``): a ``ConfigurationError`` (a bad setting found when a provider
    first builds its adapter) exits 2, an unreachable broker 1.
    """
    from ..bootstrap import Container

    container = Container.for_settings(settings)
    try:
        yield container
    finally:
        container.shutdown_resources()
