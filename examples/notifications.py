"""User notifications: one user's private channel, as in the seed's first example."""

from __future__ import annotations

from tidings.ports import RealtimePort


class NotificationService:
    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def notify(self, user_id: int, title: str, body: str) -> None:
        self.realtime.to_user(user_id, "notification", {"title": title, "body": body})


def demo(realtime: RealtimePort) -> None:
    service = NotificationService(realtime)
    service.notify(42, "New Message", "Ann sent you a message")
    service.notify(7, "Welcome", "Thanks for signing up")
