"""How long a client waits before it reconnects: exponential back-off with jitter, bounded.

The same rule as the browser client (``client.js``): after the n-th failed attempt in a row the
delay is ``min(max_delay, min_delay * 2**n)``, then jittered to a random value between half of
it and all of it, so that thousands of clients cut off together (a gateway restarting) do not
come back in lockstep. A connection that succeeds starts the count again.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


@attrs.frozen
class Backoff:
    min_delay: float = attrs.field(default=0.5, validator=_positive)
    max_delay: float = attrs.field(default=10.0, validator=_positive)
    flood_delay: float = attrs.field(default=30.0, validator=_positive)
    """Before reconnecting after the gateway cut the connection for flooding (4029)."""

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.min_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must not be below min_delay ({self.min_delay})"
            )

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (0: the first failure)."""
        base = min(self.max_delay, self.min_delay * 2 ** min(max(failures, 0), 30))
        return jitter(base, rand)

    def flooded(self, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after a close for flooding."""
        return jitter(self.flood_delay, rand)


def jitter(delay: float, rand: Callable[[], float] = random.random) -> float:
    """A delay between half of ``delay`` and all of it."""
    return delay / 2 + rand() * delay / 2
