"""The gateway frames text itself, once per broadcast; the bytes must be wsproto's."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tidings.adapters.web.framing import text_frame


@pytest.fixture(scope="module")
def server() -> WSConnection:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example", target="/ws")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    return server


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_frames_match_wsproto_at_every_length_boundary(server: WSConnection, size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    assert text_frame(text) == server.send(TextMessage(data=text))
