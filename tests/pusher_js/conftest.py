"""Gateways with a Pusher app, on each broker (like tests/gateway's), and the example auth app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.conftest import BROKERS, Gateways
from tests.pusher_js.support import PUSHER_ENV, auth_server
from tests.support.processes import Gateway


@pytest.fixture(scope="session", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def gateways(broker: str, request: pytest.FixtureRequest) -> Iterator[Gateways]:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if broker == "kafka" else None
    started = Gateways(broker, bootstrap)
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def gateway(gateways: Gateways) -> Gateway:
    """A gateway serving the Pusher app of ``support.PUSHER_ENV`` beside tidings' protocol."""
    return gateways.start(**PUSHER_ENV)


@pytest.fixture(scope="session")
def auth_url() -> Iterator[str]:
    with auth_server() as url:
        yield url
