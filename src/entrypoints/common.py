"""What every ``tidings`` command shares: settings from the environment, failing with a status,
JSON arguments, and a container whose resources are released however the command ends.

Bad arguments and bad configuration exit with status 2 and a message naming what was wrong;
broker failures exit with status 1. Both command modules (``cli``, ``kafka_cli``) import this
one and not each other, except that ``cli`` registers the ``kafka`` group.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..config import Settings
from ..domain.errors import ConfigurationError, TidingsError

if TYPE_CHECKING:
    from ..bootstrap import Container


def first_leaf(error: BaseException) -> BaseException:
    """The first exception in a (possibly nested) exception group: what to tell the user."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def fail(message: str, status: int = 2) -> NoReturn:
    """Tell the user what went wrong on stderr and exit with ``status``."""
    click.echo(f"tidings: {message}", err=True)
    sys.exit(status)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with command-line values on top (None: not
    given). A bad value exits 2 naming its variable."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings.load(**given)
    except ConfigurationError as exc:
        fail(str(exc))


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

    A ``ConfigurationError`` raised inside (a bad pass-through setting found when a provider
    first builds its adapter) exits 2, any other tidings error 1, each with its message.
    """
    from ..bootstrap import Container

    container = Container.for_settings(settings)
    try:
        yield container
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except TidingsError as exc:
        fail(str(exc), 1)
    finally:
        container.shutdown_resources()
