"""What makes the demo page move: a dashboard ticker and the occasional announcement."""

from __future__ import annotations

import itertools
import logging
import random

import trio

from ..domain.errors import BrokerError
from ..ports import RealtimePort

log = logging.getLogger("tidings.demo")

ANNOUNCEMENTS = (
    "Scheduled maintenance tonight at 2 AM",
    "New feature: presence channels show who is online",
    "Tip: open this page in a second window and chat with yourself",
)


async def run_demo_feed(
    realtime: RealtimePort, connections: object = None, *, interval: float = 1.0
) -> None:
    """Broadcast ``dashboard.metrics`` every ``interval`` and an announcement now and then.

    First it opens the page's chat room with a broadcast: the room carries client events only,
    and on Kafka those go only into a topic the server created (ADR 0016).
    """
    try:
        await realtime.abroadcast("presence-chat.lobby", "room.opened", None)
    except BrokerError as exc:
        log.warning("demo feed could not open the chat room: %s", exc)
    orders = 0
    rng = random.Random()
    for tick in itertools.count():
        orders += rng.randint(0, 3)
        metrics = {
            "orders": orders,
            "revenue": round(orders * 23.5, 2),
            "active_users": rng.randint(40, 60),
            "cpu": round(rng.uniform(10, 70), 1),
            "tick": tick,
        }
        try:
            await realtime.abroadcast("dashboard.metrics", "metrics.updated", metrics)
            if tick % 20 == 5:
                text = ANNOUNCEMENTS[(tick // 20) % len(ANNOUNCEMENTS)]
                await realtime.abroadcast(
                    "public.announcements", "announcement", {"title": "Demo", "message": text}
                )
        except BrokerError as exc:
            log.warning("demo feed could not broadcast: %s", exc)
        await trio.sleep(interval)
