"""RealtimePort over the memory broker: sync, asyncio and trio callers; validation first."""

from __future__ import annotations

import asyncio

import pytest

from tidings import (
    InvalidChannel,
    InvalidMessage,
    Message,
    MessageTooLarge,
    UnknownBroker,
)
from tidings.bootstrap import Container
from tidings.config import Settings
from tidings.ports import FeedOptions, RealtimePort


def _container(**settings: object) -> Container:
    return Container.for_settings(Settings.load(env_file=None, **settings))


def test_broadcast_returns_the_acknowledged_message() -> None:
    realtime: RealtimePort = _container().realtime()
    message = realtime.broadcast("user.42", "notification", {"title": "New Message"})
    assert isinstance(message, Message)
    assert (message.channel.name, message.event, message.data) == (
        "user.42",
        "notification",
        {"title": "New Message"},
    )


def test_to_user_broadcasts_on_the_users_private_channel() -> None:
    message = _container().realtime().to_user(7, "order.updated", {"order_id": 1})
    assert message.channel.name == "user.7"


def test_bad_input_is_refused_before_anything_is_published() -> None:
    realtime = _container().realtime()
    with pytest.raises(InvalidChannel, match="'bad channel'"):
        realtime.broadcast("bad channel", "e", {})
    with pytest.raises(InvalidMessage, match="empty"):
        realtime.broadcast("public.x", "", {})
    with pytest.raises(InvalidMessage, match="not JSON-serialisable"):
        realtime.broadcast("public.x", "e", {"when": object()})


def test_size_limit_comes_from_configuration() -> None:
    realtime = _container(realtime_max_message_bytes=300).realtime()
    realtime.broadcast("public.x", "e", "x" * 100)
    with pytest.raises(MessageTooLarge) as error:
        realtime.broadcast("public.x", "e", "x" * 400)
    assert error.value.limit == 300 and error.value.size > 300


def test_broker_by_name_and_unknown_names() -> None:
    realtime = _container().realtime()
    assert realtime.broker().name == "memory"
    assert realtime.broker("memory") is realtime.broker()
    with pytest.raises(UnknownBroker, match="known brokers: gateway, kafka, memory"):
        realtime.broker("redis")


def test_broker_publish_as_in_the_seed() -> None:
    realtime = _container().realtime()
    broker = realtime.broker("memory")
    message = Message.event("public.news", "announcement", {"title": "Hi"})
    assert broker.publish("public.news", message).result(1).offset == 0


async def test_abroadcast_under_trio_reaches_a_feed() -> None:
    container = _container()
    realtime = container.realtime()
    async with container.subscriber().open_feed(FeedOptions()) as feed:
        sent = await realtime.abroadcast("public.t", "e", 1)
        async for batch in feed.batches():
            assert [d.message for d in batch] == [sent]
            break


def test_abroadcast_and_pending_under_asyncio() -> None:
    realtime = _container().realtime()

    async def main() -> tuple[Message, object]:
        message = await realtime.abroadcast("public.a", "e", {"x": 1})
        position = await realtime.broadcast_nowait("public.a", "e", 2)
        return message, position

    message, position = asyncio.run(main())
    assert message.data == {"x": 1}
    assert position.offset == 1  # type: ignore[attr-defined]


def test_broadcast_nowait_reports_later() -> None:
    pending = _container().realtime().broadcast_nowait("public.n", "e", None)
    seen: list[object] = []
    pending.add_done_callback(seen.append)
    assert pending.done() and pending.result(1).offset == 0
    assert seen == [pending]


def test_process_wide_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    import tidings

    monkeypatch.setenv("REALTIME_BROKER", "memory")
    monkeypatch.setattr(tidings, "_container", None)
    message = tidings.broadcast("public.news", "announcement", {"title": "Hi"})
    assert tidings.realtime().broker().name == "memory"
    assert message.event == "announcement"
    monkeypatch.setattr(tidings, "_container", None)
