"""tidings.testing: the fake a user swaps in for RealtimePort, and the pytest fixture."""

from __future__ import annotations

import logging

import pytest

from tidings import BrokerUnavailable, InvalidChannel, MessageTooLarge
from tidings.ports import RealtimePort
from tidings.testing import ANY, FakeRealtime

pytest_plugins = ["pytester"]


class NotificationService:
    """What a user's service looks like: it takes the port by injection."""

    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def notify(self, user_id: int, text: str) -> None:
        self.realtime.broadcast(f"user.{user_id}", "notification", {"body": text})


def test_fake_records_and_asserts() -> None:
    fake = FakeRealtime()
    NotificationService(fake).notify(42, "hello")
    message = fake.assert_broadcast("user.42", "notification", {"body": "hello"})
    assert message.channel.name == "user.42"
    assert fake.assert_broadcast("user.42", data=ANY) is message
    assert fake.on("user.42") == [message]
    fake.clear()
    fake.assert_nothing_broadcast()


def test_fake_failure_message_lists_what_was_broadcast() -> None:
    fake = FakeRealtime()
    fake.broadcast("public.news", "announcement", {"title": "A"})
    with pytest.raises(
        AssertionError, match=r"(?s)no broadcast on 'user.1'.*public.news announcement"
    ):
        fake.assert_broadcast("user.1")
    with pytest.raises(AssertionError, match="expected no broadcast"):
        fake.assert_nothing_broadcast()


def test_fake_validates_like_the_real_service() -> None:
    fake = FakeRealtime(max_message_bytes=200)
    with pytest.raises(InvalidChannel):
        fake.broadcast("not a channel", "e")
    with pytest.raises(MessageTooLarge):
        fake.broadcast("public.x", "e", "x" * 500)
    fake.assert_nothing_broadcast()


def test_fake_can_simulate_a_broker_failure() -> None:
    fake = FakeRealtime()
    fake.fail_with(BrokerUnavailable(["kafka:9092"], "down"))
    with pytest.raises(BrokerUnavailable, match="kafka:9092"):
        fake.broadcast("public.x", "e")
    fake.fail_with(None)
    fake.broadcast("public.x", "e")
    assert len(fake.broadcasts) == 1


async def test_fake_under_trio_and_through_a_broker_handle() -> None:
    fake = FakeRealtime()
    await fake.abroadcast("public.a", "e", 1)
    from tidings import Message

    fake.broker("kafka").publish("public.b", Message.event("public.b", "e", 2)).result()
    assert [m.data for m in fake.broadcasts] == [1, 2]


def test_plugin_fixture_replaces_the_process_wide_port(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import tidings

        def test_service(fake_realtime):
            tidings.broadcast("user.7", "order.updated", {"status": "shipped"})
            fake_realtime.assert_broadcast("user.7", "order.updated", {"status": "shipped"})
            assert tidings.realtime() is fake_realtime
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_fixture_raises_no_memory_broker_warning(
    fake_realtime: FakeRealtime, caplog: pytest.LogCaptureFixture
) -> None:
    """``tidings.broadcast()`` under the fixture reaches the fake, never the memory broker, so
    its warning for broadcasts nobody reads stays silent."""
    import tidings

    with caplog.at_level(logging.WARNING):
        tidings.broadcast("user.7", "order.updated", {"status": "shipped"})
    fake_realtime.assert_broadcast("user.7", "order.updated", {"status": "shipped"})
    assert [r for r in caplog.records if r.name == "tidings.memory"] == []
