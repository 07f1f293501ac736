"""Processes the harness starts: publishers, publish and consume runs. Each prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

BODY = "The quick brown fox jumps over the lazy dog; tidings benchmark payload, "
EVENT = "bench"


def data(seq: int, channel: str) -> dict[str, Any]:
    """The data of every benchmark message (about 150 bytes of JSON), stamped with the send time.

    ``ts`` (ns since the epoch) is what the load generator subtracts from the receive time.
    """
    return {"ts": time.time_ns(), "seq": seq, "channel": channel, "body": BODY}


def report(summary: dict[str, Any]) -> None:
    print(json.dumps(summary), flush=True)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
