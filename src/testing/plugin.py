"""The pytest plugin tidings installs: the ``fake_realtime`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dependency_injector import providers

from . import FakeRealtime


@pytest.fixture
def fake_realtime() -> Iterator[FakeRealtime]:
    """A ``FakeRealtime``, also what ``tidings.realtime()`` and ``broadcast()`` use meanwhile."""
    from .. import container as process_container

    fake = FakeRealtime()
    container = process_container()
    with container.realtime.override(providers.Object(fake)):
        yield fake
