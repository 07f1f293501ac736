"""Connection tokens: who a client is, proven by a signature the gateway can check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..domain import JSON, Identity


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Identity:
        """The identity a token proves; raises ``InvalidToken`` saying why it is refused."""
        ...


class TokenIssuer(Protocol):
    def issue(
        self,
        user_id: str,
        *,
        info: JSON = None,
        ttl: float = 3600,
        channels: Sequence[str] = (),
    ) -> str:
        """A signed token for ``user_id`` that expires after ``ttl`` seconds.

        ``channels`` are patterns of private and presence channels the holder may join on top of
        the configured rules.
        """
        ...
