"""Gateways with a Pusher app, on each broker (like tests/gateway's), and the example auth app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway import conftest as gateway_fixtures
from tests.gateway.conftest import Gateways
from tests.pusher_js.support import PUSHER_ENV, auth_server
from tests.support.processes import Gateway

broker = gateway_fixtures.broker
"""Each broker in turn, as in tests/gateway."""
gateways = gateway_fixtures.gateways
"""The gateways of this run on that broker, as in tests/gateway."""


@pytest.fixture(scope="session")
def gateway(gateways: Gateways) -> Gateway:
    """A gateway serving the Pusher app of ``support.PUSHER_ENV`` beside tidings' protocol."""
    return gateways.start(**PUSHER_ENV)


@pytest.fixture(scope="session")
def auth_url() -> Iterator[str]:
    with auth_server() as url:
        yield url
