"""Run every example on the embedded memory broker and print what each channel received.

.venv/bin/python examples/run_all.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import announcements
import dashboard
import notifications
import orders
import presence_chat

from tidings.bootstrap import Container
from tidings.config import Settings
from tidings.ports import FeedOptions

EXAMPLES = (notifications, announcements, presence_chat, orders, dashboard)


async def main() -> None:
    container = Container.for_settings(Settings.load(env_file=None, realtime_broker="memory"))
    realtime = container.realtime()
    received: dict[str, list[str]] = {}
    # Listen the way a gateway does: every channel, from now on.
    async with container.subscriber().open_feed(FeedOptions(timeout=0.1)) as feed:
        for example in EXAMPLES:
            example.demo(realtime)
        async for batch in feed.batches():
            if not batch:
                break
            for delivered in batch:
                message = delivered.message
                line = f"{message.event} {json.dumps(message.data)}"
                received.setdefault(message.channel.name, []).append(line)
    for channel, lines in received.items():
        print(f"{channel}  ({len(lines)} message{'s' if len(lines) > 1 else ''})")
        for line in lines:
            print(f"    {line}")


if __name__ == "__main__":
    trio.run(main)
