"""Webhooks to PUSHER_WEBHOOK_URL, each request checked by the ``pusher`` library's own
``validate_webhook``: occupancy, presence members, client events; retried while the receiver
refuses them, without holding up delivery."""

from __future__ import annotations

from typing import Any

import httpx
import pusher
import trio

from tests.support.processes import Gateway
from tests.support.webhooks import WebhookReceiver
from tests.support.wsclient import connect

from .conftest import PUSHER_APP, RULES, Gateways
from .support import WAIT, token, unique


def validated(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """Every event received so far, each request validated as the app's server would."""
    checker = pusher.Pusher(
        app_id=PUSHER_APP["app_id"], key=PUSHER_APP["key"], secret=PUSHER_APP["secret"]
    )
    events: list[dict[str, Any]] = []
    for request in list(receiver.received):
        body = checker.validate_webhook(
            request.headers["x-pusher-key"], request.headers["x-pusher-signature"], request.body
        )
        assert body is not None, f"a webhook that does not validate: {request!r}"
        events.extend(body["events"])
    return events


async def received(
    receiver: WebhookReceiver, wanted: list[dict[str, Any]], channel: str
) -> list[dict[str, Any]]:
    """Wait until the events of ``channel`` received are ``wanted`` (in order); return them."""

    def of_channel() -> list[dict[str, Any]]:
        return [event for event in validated(receiver) if event.get("channel") == channel]

    await trio.to_thread.run_sync(
        lambda: receiver.wait_for(lambda: len(of_channel()) >= len(wanted), WAIT)
    )
    return of_channel()


async def test_occupied_and_vacated_once_each(
    pusher_gateway: Gateway, webhook_receiver: WebhookReceiver
) -> None:
    channel = unique("hooked")
    async with connect(pusher_gateway.ws_url) as one, connect(pusher_gateway.ws_url) as two:
        await one.subscribe(channel)
        await two.subscribe(channel)
        await one.send(type="unsubscribe", channel=channel)
        await one.expect(type="unsubscribed")
    wanted = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "channel_vacated", "channel": channel},
    ]
    assert await received(webhook_receiver, wanted, channel) == wanted


async def test_members_added_and_removed(
    pusher_gateway: Gateway, webhook_receiver: WebhookReceiver
) -> None:
    room = unique("presence-chat")
    async with connect(pusher_gateway.ws_url, token("ann")) as ann:
        await ann.subscribe(room)
        async with connect(pusher_gateway.ws_url, token("bob")) as bob:
            await bob.subscribe(room)
    wanted = [
        {"name": "channel_occupied", "channel": room},
        {"name": "member_added", "channel": room, "user_id": "ann"},
        {"name": "member_added", "channel": room, "user_id": "bob"},
        {"name": "member_removed", "channel": room, "user_id": "bob"},
        {"name": "member_removed", "channel": room, "user_id": "ann"},
        {"name": "channel_vacated", "channel": room},
    ]
    events = await received(webhook_receiver, wanted, room)
    assert sorted(map(str, events)) == sorted(map(str, wanted))
    position = {str(event): index for index, event in enumerate(events)}
    assert position[str(wanted[1])] < position[str(wanted[3])] < position[str(wanted[5])]


async def test_a_client_event_is_reported(
    pusher_gateway: Gateway, webhook_receiver: WebhookReceiver
) -> None:
    room = unique("presence-chat")
    async with connect(pusher_gateway.ws_url, token("ann")) as ann:
        await ann.subscribe(room)
        await ann.send(type="event", channel=room, event="client-typing", data={"on": True})
        wanted = [
            {"name": "channel_occupied", "channel": room},
            {"name": "member_added", "channel": room, "user_id": "ann"},
            {
                "name": "client_event",
                "channel": room,
                "event": "client-typing",
                "data": '{"on":true}',
                "socket_id": ann.id,
                "user_id": "ann",
            },
        ]
        assert (await received(webhook_receiver, wanted, room))[:3] == wanted


async def test_webhooks_are_retried_while_refused_and_delivery_goes_on(
    pusher_gateway: Gateway, webhook_receiver: WebhookReceiver
) -> None:
    channel = unique("retried")
    refused_before = webhook_receiver.refused
    webhook_receiver.status = 503
    try:
        async with connect(pusher_gateway.ws_url) as ws:
            await ws.subscribe(channel)
            await trio.to_thread.run_sync(
                lambda: webhook_receiver.wait_for(
                    lambda: webhook_receiver.refused > refused_before, WAIT
                )
            )
            await ws.send(type="ping")  # the gateway serves its clients meanwhile
            await ws.expect(type="pong")
    finally:
        webhook_receiver.status = 200
    wanted = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "channel_vacated", "channel": channel},
    ]
    assert await received(webhook_receiver, wanted, channel) == wanted
    health = (await trio.to_thread.run_sync(httpx.get, pusher_gateway.url + "/healthz")).json()
    assert health["webhooks"]["failed_requests"] >= 1
    assert health["webhooks"]["dropped"] == 0


async def test_a_stopping_gateway_sends_what_its_last_connections_caused(
    gateways: Gateways, webhook_receiver: WebhookReceiver
) -> None:
    """SIGTERM closes every connection; the vacated channels and the members gone are reported
    before the process exits."""
    gateway = gateways.start(
        REALTIME_CHANNEL_RULES=RULES,
        PUSHER_APP_ID=PUSHER_APP["app_id"],
        PUSHER_APP_KEY=PUSHER_APP["key"],
        PUSHER_APP_SECRET=PUSHER_APP["secret"],
        PUSHER_WEBHOOK_URL=webhook_receiver.url,
    )
    room = unique("presence-chat")
    async with connect(gateway.ws_url, token("ann")) as ann:
        await ann.subscribe(room)
        await received(webhook_receiver, [{}, {}], room)  # occupied, ann added
        assert await trio.to_thread.run_sync(gateways.stop, gateway) == 0
    wanted = [
        {"name": "channel_occupied", "channel": room},
        {"name": "member_added", "channel": room, "user_id": "ann"},
        {"name": "member_removed", "channel": room, "user_id": "ann"},
        {"name": "channel_vacated", "channel": room},
    ]
    events = await received(webhook_receiver, wanted, room)
    assert sorted(map(str, events)) == sorted(map(str, wanted))
