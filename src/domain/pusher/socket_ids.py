"""Socket ids in Pusher's form: two decimal numbers joined by a dot (``123.456``).

A socket id names one connection: apps sign it into channel authorizations and pass it to the
HTTP API to exclude the sender from a broadcast. It must not be guessable from another one (the
caller draws the numbers at random), and a socket id a client sends must have this form exactly.
"""

from __future__ import annotations

import re

_SOCKET_ID = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
MAX_PART = 10**15
"""Each part is drawn below this bound (15 digits: JavaScript numbers hold it exactly)."""


def socket_id(first: int, second: int) -> str:
    """The socket id made of two numbers; raises ``ValueError`` for a negative one."""
    if first < 0 or second < 0:
        raise ValueError(f"socket id parts are natural numbers, not {first}, {second}")
    return f"{first}.{second}"


def is_socket_id(text: object) -> bool:
    """Whether ``text`` has the form of a socket id."""
    return isinstance(text, str) and _SOCKET_ID.fullmatch(text) is not None
