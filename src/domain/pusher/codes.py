"""Pusher's error and close codes, with the text Pusher gives each, and what they tell a client.

Pusher's ranges (its protocol, version 7): 4000-4099 the connection is refused for good (do not
reconnect), 4100-4199 reconnect with back-off, 4200-4299 reconnect at once, 4300-4399 anything
else (pusher-js does not reconnect after those either). A ``pusher:error`` about one frame that
the connection survives has no code (``null``), as Pusher's own server sends them.
"""

from __future__ import annotations

import enum


class PusherCode(enum.IntEnum):
    """Codes of ``pusher:error`` frames and of the close frames that follow the fatal ones."""

    SSL_ONLY = 4000
    APP_NOT_FOUND = 4001
    APP_DISABLED = 4003
    OVER_CONNECTION_QUOTA = 4004
    PATH_NOT_FOUND = 4005
    INVALID_VERSION = 4006
    UNSUPPORTED_PROTOCOL = 4007
    NO_PROTOCOL = 4008
    UNAUTHORIZED = 4009
    OVER_CAPACITY = 4100
    RECONNECT = 4200
    PONG_NOT_RECEIVED = 4201
    CLOSED_AFTER_INACTIVITY = 4202
    CLIENT_EVENT_RATE_LIMIT = 4301


MESSAGES: dict[PusherCode, str] = {
    PusherCode.SSL_ONLY: "Application only accepts SSL connections, reconnect using wss://",
    PusherCode.APP_NOT_FOUND: "Application does not exist",
    PusherCode.APP_DISABLED: "Application disabled",
    PusherCode.OVER_CONNECTION_QUOTA: "Application is over connection quota",
    PusherCode.PATH_NOT_FOUND: "Path not found",
    PusherCode.INVALID_VERSION: "Invalid version string format",
    PusherCode.UNSUPPORTED_PROTOCOL: "Unsupported protocol version",
    PusherCode.NO_PROTOCOL: "No protocol version supplied",
    PusherCode.UNAUTHORIZED: "Connection is unauthorized",
    PusherCode.OVER_CAPACITY: "Over capacity",
    PusherCode.RECONNECT: "Generic reconnect immediately",
    PusherCode.PONG_NOT_RECEIVED: "Pong reply not received",
    PusherCode.CLOSED_AFTER_INACTIVITY: "Closed after inactivity",
    PusherCode.CLIENT_EVENT_RATE_LIMIT: "Client event rejected due to rate limit",
}


class CloseAction(enum.StrEnum):
    """What pusher-js does after a close with a given code (its ``getCloseAction``)."""

    REFUSED = "refused"
    """Stays disconnected."""
    BACKOFF = "backoff"
    """Reconnects after a delay."""
    RETRY = "retry"
    """Reconnects at once."""


def close_action(code: int) -> CloseAction:
    """The action a Pusher client takes after a close with ``code`` in Pusher's own ranges."""
    if 4100 <= code < 4200:
        return CloseAction.BACKOFF
    if 4200 <= code < 4300:
        return CloseAction.RETRY
    return CloseAction.REFUSED


# tidings' close codes (``domain.protocol.CloseCode``) and what a Pusher client is told instead:
# the same advice in Pusher's ranges. Codes below 4000 keep their meaning (pusher-js reconnects).
_FROM_TIDINGS: dict[int, PusherCode] = {
    1001: PusherCode.RECONNECT,  # the gateway stops: another node takes over, reconnect now
    1011: PusherCode.RECONNECT,  # this connection failed on the gateway's side
    4000: PusherCode.PONG_NOT_RECEIVED,  # idle: nothing came back to our ping
    4008: PusherCode.OVER_CAPACITY,  # too slow a reader: back off, then reconnect
    4029: PusherCode.CLIENT_EVENT_RATE_LIMIT,  # flooding: do not come back at once
}


def pusher_close_code(code: int) -> int:
    """The close code a Pusher client gets for a close tidings decided with ``code``."""
    return int(_FROM_TIDINGS.get(code, code))
