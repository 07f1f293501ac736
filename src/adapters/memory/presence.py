"""Presence on one node: nothing to exchange."""

from __future__ import annotations

import trio

from ...domain.presence import PresenceRecord
from ...ports import PresenceSink


class LocalPresenceBus:
    """Implements ``PresenceBus`` for a single gateway (the memory broker is one process)."""

    async def run(
        self, sink: PresenceSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()

    def publish(self, record: PresenceRecord) -> None:
        """Nobody else to tell."""
