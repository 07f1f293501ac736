"""A presence chat room. Who is online comes from the gateway (presence.join / presence.leave);
the application broadcasts room events such as a system message when someone joins."""

from __future__ import annotations

import time

from tidings.ports import RealtimePort


class ChatRoomService:
    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def user_joined(self, room_id: int, user_id: int, username: str) -> None:
        self.realtime.broadcast(
            f"presence-chat.{room_id}",
            "user.joined",
            {"user_id": user_id, "username": username, "joined_at": int(time.time())},
        )

    def say(self, room_id: int, username: str, text: str, socket_id: str | None = None) -> None:
        # socket_id: the sender's connection id, so the sender's own tab does not get it back.
        self.realtime.broadcast(
            f"presence-chat.{room_id}",
            "message",
            {"from": username, "text": text},
            exclude=socket_id,
        )


def demo(realtime: RealtimePort) -> None:
    room = ChatRoomService(realtime)
    room.user_joined(1, 42, "ann")
    room.say(1, "ann", "hello everyone")
