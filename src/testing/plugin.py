"""The pytest plugin tidings installs: the ``fake_realtime`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dependency_injector import providers

from . import FakeRealtime


@pytest.fixture
def fake_realtime() -> Iterator[FakeRealtime]:
    """A ``FakeRealtime``, also what ``tidings.realtime()`` and ``broadcast()`` use meanwhile."""
    import tidings

    fake = FakeRealtime()
    container = tidings.container()
    with container.realtime.override(providers.Object(fake)):
        yield fake
