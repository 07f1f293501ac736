"""A token bucket: how many frames a client may send, as a pure function of time."""

from __future__ import annotations

import attrs


@attrs.define
class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst``.

    Time is passed in, never read, so the rule is deterministic and testable.
    """

    rate: float
    burst: float
    tokens: float = attrs.field(default=None)
    updated: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {self.rate}, {self.burst}")
        if self.tokens is None:
            self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        """Spend one token at time ``now`` (seconds); False when the bucket is empty."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
