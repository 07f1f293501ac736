"""Only the server creates topics, and the topic is the authority (issue 12, ADR 0016).

Against the real broker and real ``tidings serve`` processes: clients that subscribe to fresh
channels and send client events on them create no topic and are told why (404); client events
travel on channels whose topic the server created; a record whose envelope names a channel its
topic does not carry (or, on shared topics, whose key is not that channel) reaches nobody, live,
on resume or through ``tidings kafka consume``, and ``/metrics`` counts it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env
from tests.support.wsclient import Client, connect
from tidings.adapters.jwt_tokens import JwtTokens
from tidings.adapters.kafka.common import MisplacedRecords
from tidings.domain import Channel, Message, PerChannelTopics, Position, SharedTopics
from tidings.domain.errors import ChannelHasNoTopic, ConfigurationError, InvalidTopicName
from tidings.domain.topics import TopicStrategy, topic_carries

from .helpers import (
    Cli,
    kafka_config,
    load_settings,
    publish_all,
    publisher_for,
    topics_with_prefix,
)

pytestmark = pytest.mark.kafka

WAIT = 30.0
"""Seconds to wait for a frame: a new channel's first message takes a few seconds on Kafka."""

RULES = "presence-chat.*=authenticated;private-room.*=authenticated"
"""The README's rule for presence rooms, and one for private rooms."""


def token(user: str) -> str:
    return JwtTokens(SECRET).issue(user, ttl=600)


def delete_topics(admin: KafkaAdminClient, prefix: str) -> None:
    ours = sorted(topics_with_prefix(admin, prefix))
    if ours:
        admin.delete_topics(ours)


@pytest.fixture(scope="module")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        yield client
    finally:
        client.close()


def start_gateway(
    bootstrap: str, admin: KafkaAdminClient, **settings: str
) -> Iterator[tuple[Gateway, dict[str, str]]]:
    run = secrets.token_hex(4)
    env = process_env(
        REALTIME_SECRET=SECRET,
        REALTIME_API_KEY=API_KEY,
        REALTIME_NODE_ID=f"node-{run}",
        REALTIME_CHANNEL_RULES=RULES,
        REALTIME_BROKER="kafka",
        KAFKA_BROKERS=bootstrap,
        KAFKA_TOPIC_PREFIX=f"tauth{run}",
        KAFKA_CONSUMER_GROUP=f"gauth{run}",
        **settings,
    )
    gateway = Gateway(env)
    try:
        yield gateway, env
    finally:
        code = gateway.stop()
        delete_topics(admin, env["KAFKA_TOPIC_PREFIX"])
        assert code == 0, f"gateway exited {code}:\n{gateway.output()}"


@pytest.fixture(scope="module")
def per_channel(
    kafka_bootstrap: str, admin: KafkaAdminClient
) -> Iterator[tuple[Gateway, dict[str, str]]]:
    """A gateway on per-channel topics (the default strategy)."""
    yield from start_gateway(kafka_bootstrap, admin)


@pytest.fixture(scope="module")
def shared(
    kafka_bootstrap: str, admin: KafkaAdminClient
) -> Iterator[tuple[Gateway, dict[str, str]]]:
    """A gateway on one shared topic."""
    yield from start_gateway(
        kafka_bootstrap, admin, KAFKA_TOPIC_STRATEGY="shared", KAFKA_SHARED_TOPICS="1"
    )


def broadcast(gateway: Gateway, channel: str, event: str, data: Any = None) -> dict[str, Any]:
    """``POST /broadcast``: server-side publishing, which creates the channel's topic."""
    response = httpx.post(
        gateway.url + "/broadcast",
        json={"channel": channel, "event": event, "data": data},
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=WAIT,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def abroadcast(gateway: Gateway, channel: str, event: str, data: Any = None) -> None:
    await trio.to_thread.run_sync(broadcast, gateway, channel, event, data)


def dropped(gateway: Gateway, reason: str) -> float:
    """``tidings_records_dropped_total{reason=...}`` from the gateway's ``/metrics``."""
    text = httpx.get(gateway.url + "/metrics", timeout=WAIT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "tidings_records_dropped_total"
                and sample.labels.get("reason") == reason
            ):
                return float(sample.value)
    return 0.0


def forge(bootstrap: str, topic: str, message: Message, key: bytes | None) -> None:
    """Write ``message`` into ``topic`` as any Kafka client with write access to it could."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, value=message.to_bytes(), key=key).get(timeout=WAIT)
    finally:
        producer.close()


async def next_event(client: Client) -> dict[str, Any]:
    """The client's next frame, which must be an event (not an error)."""
    frame = await client.recv(WAIT)
    assert frame.get("type") == "event", frame
    return frame


# -- Only the server creates topics ------------------------------------------------------------


def test_no_kafka_client_of_tidings_asks_the_broker_to_create_topics(
    kafka_env: dict[str, str],
) -> None:
    """Brokers create a topic named in a metadata request by default; tidings' consumers (feed,
    history, presence) and producer never ask for it, whatever is passed through."""
    env = {**kafka_env, "KAFKA_CONSUMER_SETTINGS": "fetch.min.bytes=1"}
    settings = load_settings(env)
    config = kafka_config(settings)
    assert config.consumer()["allow_auto_create_topics"] is False
    assert config.producer("tidings-test")["allow_auto_create_topics"] is False
    with pytest.raises(ConfigurationError, match=r"allow\.auto\.create\.topics.*ADR 0016"):
        kafka_config(
            load_settings({**kafka_env, "KAFKA_CONSUMER_SETTINGS": "allow.auto.create.topics=true"})
        )


def test_a_publish_that_may_not_create_fails_on_a_missing_topic_and_creates_none(
    kafka_env: dict[str, str], admin: KafkaAdminClient
) -> None:
    settings = load_settings(kafka_env)
    prefix = kafka_env["KAFKA_TOPIC_PREFIX"]
    publisher = publisher_for(settings)
    try:
        existing = publisher.existing_topics_only()
        message = Message.event("presence-chat.nobody", "client-x", None)
        with pytest.raises(ChannelHasNoTopic) as caught:
            existing.publish(message.channel, message).result(timeout=WAIT)
        assert caught.value.channel == "presence-chat.nobody"
        assert caught.value.topic == f"{prefix}_presence--chat_nobody"
        assert "create-topics presence-chat.nobody" in str(caught.value)
        assert topics_with_prefix(admin, prefix) == set()

        # The server's own publish creates the topic; then the client's kind goes through.
        first = Message.event("presence-chat.nobody", "opened", None)
        publisher.publish(first.channel, first).result(timeout=WAIT)
        assert existing.publish(message.channel, message).result(timeout=WAIT) is not None
        assert topics_with_prefix(admin, prefix) == {f"{prefix}_presence--chat_nobody"}

        # A publisher that has not met the topic yet finds it by asking the cluster.
        other = publisher_for(settings)
        try:
            ack = other.existing_topics_only().publish(message.channel, message)
            assert ack.result(timeout=WAIT) is not None
        finally:
            other.close()
    finally:
        publisher.close()
        delete_topics(admin, prefix)


async def test_three_users_on_fresh_presence_channels_create_no_topics(
    per_channel: tuple[Gateway, dict[str, str]], admin: KafkaAdminClient
) -> None:
    """The issue's attack: subscribe, send one client event, leave, on 20 fresh rooms each."""
    gateway, env = per_channel
    prefix = env["KAFKA_TOPIC_PREFIX"]
    before = await trio.to_thread.run_sync(topics_with_prefix, admin, prefix)
    run = secrets.token_hex(3)
    refusals: list[dict[str, Any]] = []

    async def user(name: str) -> None:
        for n in range(20):  # a connection per room: presence joins are rate-limited per one
            room = f"presence-chat.{run}-{name}-{n}"
            async with connect(gateway.ws_url, token(name)) as client:
                await client.subscribe(room)
                await client.send(type="event", channel=room, event="client-hello", data=n)
                frame = await client.expect(WAIT, type="error")
                assert frame["channel"] == room, frame
                refusals.append(frame)

    async with trio.open_nursery() as nursery:
        for name in ("ann", "bob", "cy"):
            nursery.start_soon(user, name)

    assert len(refusals) == 60
    for frame in refusals:
        assert frame["data"]["code"] == 404, frame
        message = frame["data"]["message"]
        assert "has no topic yet" in message and "tidings kafka create-topics" in message, frame
    after = await trio.to_thread.run_sync(topics_with_prefix, admin, prefix)
    assert after == before, sorted(after - before)


async def test_subscribes_create_no_topics_even_when_resuming(
    per_channel: tuple[Gateway, dict[str, str]], admin: KafkaAdminClient
) -> None:
    """A resume reads the channel's topic (history); a topic that is missing stays missing."""
    gateway, env = per_channel
    prefix = env["KAFKA_TOPIC_PREFIX"]
    before = await trio.to_thread.run_sync(topics_with_prefix, admin, prefix)
    room = f"presence-chat.{secrets.token_hex(3)}"
    async with connect(gateway.ws_url, token("ann")) as client:
        told = Position.parse((await client.subscribe(room))["data"]["position"])
    async with connect(gateway.ws_url, token("ann")) as client:
        # "I have everything up to offset 3" of a channel that has no topic: refused, not made.
        await client.send(type="subscribe", channel=room, since=str(Position(told.stream, 3)))
        await client.expect(WAIT, type="subscribed", channel=room)
        gone = await client.expect(WAIT, type="error")
        assert gone["data"]["code"] == 410 and "has no topic" in gone["data"]["message"], gone
    after = await trio.to_thread.run_sync(topics_with_prefix, admin, prefix)
    assert after == before, sorted(after - before)


@pytest.mark.parametrize("creator", ["broadcast", "create-topics"])
async def test_client_events_travel_on_a_channel_whose_topic_the_server_created(
    per_channel: tuple[Gateway, dict[str, str]], cli: Cli, creator: str
) -> None:
    gateway, env = per_channel
    room = f"presence-chat.{secrets.token_hex(3)}"
    async with (
        connect(gateway.ws_url, token("ann")) as ann,
        connect(gateway.ws_url, token("bob")) as bob,
    ):
        await ann.subscribe(room)
        await bob.subscribe(room)
        if creator == "broadcast":
            await abroadcast(gateway, room, "opened")
            for client in (ann, bob):
                await client.expect(WAIT, type="event", event="opened")
        else:
            run = await trio.to_thread.run_sync(
                lambda: cli.run(["kafka", "create-topics", room], env)
            )
            assert run.code == 0, run.describe()
            topic = PerChannelTopics(env["KAFKA_TOPIC_PREFIX"]).topic_for(Channel(room))
            assert run.out.split() == ["created", topic, room], run.describe()
        await ann.send(type="event", channel=room, event="client-wave", data={"from": "ann"})
        event = await bob.expect(WAIT, type="event", event="client-wave")
        assert event["data"] == {"from": "ann"}
        # Ann gets no error for it: the next thing she hears is Bob's answer.
        await bob.send(type="event", channel=room, event="client-wave", data={"from": "bob"})
        answer = await ann.recv(WAIT)
        while answer.get("event") == "presence.join":
            answer = await ann.recv(WAIT)
        assert answer.get("event") == "client-wave" and answer["data"] == {"from": "bob"}, answer


def test_create_topics_refuses_bad_channels_and_says_what_existed(
    kafka_env: dict[str, str], cli: Cli, admin: KafkaAdminClient
) -> None:
    prefix = kafka_env["KAFKA_TOPIC_PREFIX"]
    try:
        bad = cli.run(["kafka", "create-topics", "presence-chat.1", "bad name"], kafka_env)
        assert bad.code == 2, bad.describe()
        assert "'bad name'" in bad.err
        assert topics_with_prefix(admin, prefix) == set()

        first = cli.run(["kafka", "create-topics", "presence-chat.1,user.1"], kafka_env)
        assert first.code == 0, first.describe()
        again = cli.run(["kafka", "create-topics", "presence-chat.1"], kafka_env)
        assert again.code == 0, again.describe()
        assert again.out.split() == ["exists", f"{prefix}_presence--chat_1", "presence-chat.1"]
        assert "0 topic(s) created, 1 existed already" in again.err
        assert topics_with_prefix(admin, prefix) == {
            f"{prefix}_presence--chat_1",
            f"{prefix}_user_1",
        }
    finally:
        delete_topics(admin, prefix)


# -- The topic is the authority ----------------------------------------------------------------


@hypothesis_settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)), max_size=40))
def test_the_memo_of_verdicts_agrees_with_the_rule(draws: list[tuple[int, int, int]]) -> None:
    """``MisplacedRecords`` remembers verdicts and counts refusals: it must say what
    ``topic_carries`` says, for every record, in any order, on both strategies."""
    names = ["user.1", "public.news", "chat.a", "chat.b"]
    for strategy in (PerChannelTopics("t"), SharedTopics("t", 2)):
        misplaced = MisplacedRecords(strategy)
        topics = [strategy.topic_for(Channel(name)) for name in names]
        refused = 0
        for named, topic_of, key_of in draws:
            key = (None, names[named].encode(), names[topic_of].encode())[key_of]
            expected = topic_carries(strategy, topics[topic_of], key, names[named])
            assert misplaced.accepts(topics[topic_of], key, names[named]) == expected
            refused += not expected
        assert misplaced.count == refused


def test_the_memo_is_bounded_and_still_right_after_it_was_cleared() -> None:
    misplaced = MisplacedRecords(PerChannelTopics("t"))
    misplaced.MEMO_SIZE = 3
    for n in range(10):
        assert not misplaced.accepts("t_public_news", None, f"user.{n}")
        assert len(misplaced.expected_keys("t_public_news")) <= 3
    assert misplaced.accepts("t_public_news", None, "public.news")
    assert misplaced.count == 10


async def test_a_forged_record_in_another_channels_topic_reaches_nobody(
    per_channel: tuple[Gateway, dict[str, str]], kafka_bootstrap: str
) -> None:
    """The issue's case: a record saying ``user.1`` written into ``public.news``'s topic."""
    gateway, env = per_channel
    prefix = env["KAFKA_TOPIC_PREFIX"]
    counted = await trio.to_thread.run_sync(dropped, gateway, "wrong_topic")
    async with (
        connect(gateway.ws_url, token("1")) as user_1,
        connect(gateway.ws_url) as reader,
    ):
        await user_1.subscribe("user.1")
        await reader.subscribe("public.news")
        await abroadcast(gateway, "public.news", "opened")  # the topic exists and is read
        assert (await next_event(reader))["event"] == "opened"

        for _ in range(2):
            forged = Message.event("user.1", "forged", {"steal": "session"})
            await trio.to_thread.run_sync(
                forge, kafka_bootstrap, f"{prefix}_public_news", forged, b"public.news"
            )
        # Genuine broadcasts after it, on both channels: each client's next event is its own.
        await abroadcast(gateway, "public.news", "genuine", "news")
        await abroadcast(gateway, "user.1", "genuine", "for user 1")
        assert (await next_event(reader))["data"] == "news"
        assert (await next_event(user_1))["data"] == "for user 1"
        await user_1.nothing_more(0.5)

    def counted_twice() -> bool:
        return dropped(gateway, "wrong_topic") == counted + 2

    def warned() -> list[str]:
        return [line for line in gateway.stderr.lines if f"{prefix}_public_news " in line]

    await wait_for(counted_twice, "the two forged records counted in /metrics")
    await wait_for(warned, "a warning naming the topic")
    assert len(warned()) == 1, "logged once per topic, not once per record"


async def test_on_shared_topics_a_record_with_another_key_reaches_nobody_live_or_on_resume(
    shared: tuple[Gateway, dict[str, str]], kafka_bootstrap: str
) -> None:
    """In the right shared topic, but keyed as another channel: refused by the live feed and by
    history (a resume), the genuine messages around it delivered."""
    gateway, env = shared
    strategy = SharedTopics(env["KAFKA_TOPIC_PREFIX"], 1)
    topic = strategy.topic_for(Channel("user.1"))
    counted = await trio.to_thread.run_sync(dropped, gateway, "wrong_topic")
    async with connect(gateway.ws_url, token("1")) as live:
        await live.subscribe("user.1")
        async with connect(gateway.ws_url, token("1")) as leaving:
            await leaving.subscribe("user.1")
            await abroadcast(gateway, "user.1", "genuine", 1)
            for client in (live, leaving):
                first = await next_event(client)
                assert first["data"] == 1
            position = first["position"]

        forged = Message.event("user.1", "forged", {"steal": "session"})
        await trio.to_thread.run_sync(forge, kafka_bootstrap, topic, forged, b"public.news")
        await abroadcast(gateway, "user.1", "genuine", 2)
        assert (await next_event(live))["data"] == 2

        async with connect(gateway.ws_url, token("1")) as resumed:
            await resumed.subscribe("user.1", since=position)
            replayed = await next_event(resumed)
            assert replayed["data"] == 2, replayed
            await resumed.nothing_more(0.5)

    def counted_once() -> bool:
        return dropped(gateway, "wrong_topic") == counted + 1

    await wait_for(counted_once, "the forged record counted in /metrics (live feed)")


@pytest.mark.parametrize("strategy_name", ["per-channel", "shared"])
def test_kafka_consume_prints_only_records_their_topic_carries(
    kafka_env: dict[str, str],
    cli: Cli,
    admin: KafkaAdminClient,
    kafka_bootstrap: str,
    strategy_name: str,
) -> None:
    env = {**kafka_env, "KAFKA_TOPIC_STRATEGY": strategy_name, "KAFKA_SHARED_TOPICS": "1"}
    settings = load_settings(env)
    strategy: TopicStrategy = settings.topic_strategy()
    try:
        publish_all(settings, [("public.news", "genuine", 1), ("user.1", "genuine", 2)])
        forged = Message.event("user.1", "forged", {"steal": "session"})
        # Per channel: in public.news's topic, keyed as user.1. Shared: user.1's topic, wrong key.
        where = "public.news" if strategy_name == "per-channel" else "user.1"
        key = b"user.1" if strategy_name == "per-channel" else b"public.news"
        forge(kafka_bootstrap, strategy.topic_for(Channel(where)), forged, key)
        publish_all(settings, [("user.1", "genuine", 3)])

        run = cli.run(
            ["kafka", "consume", "--channels", "public.news,user.1", "--stop-when-empty"],
            env,
            timeout=60,
        )
        assert run.code == 0, run.describe()
        printed = sorted((m["channel"], m["data"]) for m in run.messages)
        assert printed == [("public.news", 1), ("user.1", 2), ("user.1", 3)], run.describe()
        assert "dropped 1 record(s) whose envelope names a channel" in run.err, run.describe()
    finally:
        delete_topics(admin, kafka_env["KAFKA_TOPIC_PREFIX"])


def test_a_channel_whose_topic_is_too_long_is_refused_by_create_topics(
    kafka_env: dict[str, str], cli: Cli
) -> None:
    name = "=" * 164
    with pytest.raises(InvalidTopicName):
        PerChannelTopics("x").topic_for(Channel(name))
    run = cli.run(["kafka", "create-topics", name], kafka_env)
    assert run.code == 2, run.describe()
    assert "KAFKA_TOPIC_STRATEGY=shared" in run.err


async def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` (blocking, run in a thread) until it holds; fail naming ``what``."""
    deadline = trio.current_time() + timeout
    while True:
        if await trio.to_thread.run_sync(condition):
            return
        if trio.current_time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await trio.sleep(0.1)
