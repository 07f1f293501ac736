"""Public announcements: everyone may listen on a public channel."""

from __future__ import annotations

from datetime import UTC, datetime

from tidings.ports import RealtimePort


class AnnouncementService:
    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def announce(self, title: str, message: str) -> None:
        self.realtime.broadcast(
            "public.announcements",
            "announcement",
            {
                "title": title,
                "message": message,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )


def demo(realtime: RealtimePort) -> None:
    AnnouncementService(realtime).announce(
        "System Maintenance", "Scheduled maintenance tonight at 2 AM"
    )
