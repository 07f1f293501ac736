"""The gateway's HTTP side on the WebSocket's port: /broadcast, /healthz, /metrics, static (§4)."""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import httpx
import trio

from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, aget, apost, auth, unique


async def test_broadcast_without_key_is_401(gateway: Gateway) -> None:
    response = await apost(gateway, "/broadcast", {"channel": "public.a", "event": "e"}, key=None)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert "API key" in response.json()["error"]


async def test_broadcast_with_wrong_key_is_401(gateway: Gateway) -> None:
    response = await apost(
        gateway, "/broadcast", {"channel": "public.a", "event": "e"}, key="not-the-key"
    )
    assert response.status_code == 401
    assert "wrong API key" in response.json()["error"]


async def test_broadcast_with_bad_json_is_400(gateway: Gateway) -> None:
    response = await apost(gateway, "/broadcast", content=b"{channel: nope")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


async def test_broadcast_missing_field_is_400(gateway: Gateway) -> None:
    response = await apost(gateway, "/broadcast", {"channel": "public.a"})
    assert response.status_code == 400
    assert "event" in response.json()["error"]


async def test_broadcast_invalid_channel_is_400_naming_it(gateway: Gateway) -> None:
    response = await apost(gateway, "/broadcast", {"channel": "no spaces!", "event": "e"})
    assert response.status_code == 400
    assert "no spaces!" in response.json()["error"]


async def test_broadcast_unknown_field_is_400(gateway: Gateway) -> None:
    response = await apost(
        gateway, "/broadcast", {"channel": "public.a", "event": "e", "colour": "red"}
    )
    assert response.status_code == 400
    assert "colour" in response.json()["error"]


async def test_body_too_big_is_413(gateway: Gateway) -> None:
    body = json.dumps({"channel": "public.a", "event": "e", "data": "x" * 1_100_000}).encode()
    response = await apost(gateway, "/broadcast", content=body)
    assert response.status_code == 413
    assert "error" in response.json()


async def test_message_too_large_is_413(gateway: Gateway) -> None:
    # Under the body limit, over REALTIME_MAX_MESSAGE_BYTES (65536 by default).
    response = await apost(
        gateway, "/broadcast", {"channel": "public.a", "event": "e", "data": "x" * 70_000}
    )
    assert response.status_code == 413
    assert "65536" in response.json()["error"]


async def test_a_list_with_one_message_too_large_publishes_none_of_it(gateway: Gateway) -> None:
    """A refused list published nothing, so a publisher may send its messages again one by one
    without duplicating any (ADR 0024)."""
    channel = unique("public.whole")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        response = await apost(
            gateway,
            "/broadcast",
            [
                {"channel": channel, "event": "e", "data": 1},
                {"channel": channel, "event": "e", "data": "x" * 70_000},
                {"channel": channel, "event": "e", "data": 3},
            ],
        )
        assert response.status_code == 413, response.text
        assert "65536" in response.json()["error"]
        marker = await apost(gateway, "/broadcast", {"channel": channel, "event": "marker"})
        assert marker.status_code == 200, marker.text
        [event] = await client.events(1, WAIT)
    assert event["event"] == "marker"


async def test_broadcast_a_list_answers_a_list(gateway: Gateway) -> None:
    first, second = unique("public.l1"), unique("public.l2")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(first)
        await client.subscribe(second)
        response = await apost(
            gateway,
            "/broadcast",
            [
                {"channel": first, "event": "e", "data": 1},
                {"channel": second, "event": "e", "data": 2},
                {"channel": first, "event": "e", "data": 3},
            ],
        )
        assert response.status_code == 200, response.text
        results = response.json()
        assert isinstance(results, list) and len(results) == 3
        assert [r["channel"] for r in results] == [first, second, first]
        assert all(r["id"] and r["position"] for r in results)
        events = await client.events(3, WAIT)
        assert sorted(e["id"] for e in events) == sorted(r["id"] for r in results)


async def test_numbers_reach_clients_exactly_whatever_their_size(gateway: Gateway) -> None:
    """The body is decoded by orjson where it reads numbers exactly, by the standard library
    where it would not (an integer past 64 bits): clients get the numbers sent (ADR 0040)."""
    channel = unique("public.numbers")
    data = {"ns": 1796524650435432400, "big": 2**70, "low": -(2**63) - 1, "edge": 2**64 - 1}
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        for payload in (data, {"ns": data["ns"], "f": 1e-05, "text": "é"}):
            response = await apost(
                gateway, "/broadcast", {"channel": channel, "event": "e", "data": payload}
            )
            assert response.status_code == 200, response.text
            [event] = await client.events(1, WAIT)
            assert event["data"] == payload
            assert all(type(event["data"][key]) is type(payload[key]) for key in payload)


async def test_a_whole_envelope_keeps_its_id_and_timestamp(gateway: Gateway) -> None:
    """What the gateway publisher sends: clients get the id the publisher's caller holds, so a
    message sent twice can be told apart from two messages (ADR 0024)."""
    channel = unique("public.envelope")
    envelope = {
        "id": "app-chosen-id-1",
        "type": "event",
        "channel": channel,
        "event": "e",
        "data": {"n": 1},
        "timestamp": 1700000000.25,
    }
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        response = await apost(gateway, "/broadcast", [envelope])
        assert response.status_code == 200, response.text
        [answer] = response.json()
        assert answer["id"] == "app-chosen-id-1"
        [event] = await client.events(1, WAIT)
    assert event["id"] == "app-chosen-id-1" and event["timestamp"] == 1700000000.25
    assert event["position"] == answer["position"]


async def test_an_envelope_of_another_type_or_a_bad_id_is_400(gateway: Gateway) -> None:
    base = {"channel": "public.a", "event": "e"}
    response = await apost(gateway, "/broadcast", {**base, "type": "presence"})
    assert response.status_code == 400
    assert "type must be 'event'" in response.json()["error"]
    response = await apost(gateway, "/broadcast", {**base, "id": ""})
    assert response.status_code == 400
    assert "message id" in response.json()["error"]


async def test_broadcast_an_empty_or_too_long_list_is_400(gateway: Gateway) -> None:
    assert (await apost(gateway, "/broadcast", [])).status_code == 400
    many = [{"channel": "public.a", "event": "e"}] * 101
    assert (await apost(gateway, "/broadcast", many)).status_code == 400


async def test_one_bad_message_in_a_list_publishes_none(gateway: Gateway) -> None:
    channel = unique("public.atomic")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        response = await apost(
            gateway,
            "/broadcast",
            [
                {"channel": channel, "event": "e", "data": "good"},
                {"channel": "bad name", "event": "e"},
            ],
        )
        assert response.status_code == 400
        response = await apost(
            gateway, "/broadcast", {"channel": channel, "event": "e", "data": "marker"}
        )
        assert response.status_code == 200
        [event] = await client.events(1, WAIT)
        assert event["data"] == "marker"


async def test_healthz(gateway: Gateway) -> None:
    async with connect(gateway.ws_url), connect(gateway.ws_url):
        response = await aget(gateway, "/healthz")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        health = response.json()
        assert health["status"] == "ok"
        assert health["connections"] == 2
        assert health["node"] == gateway.env["REALTIME_NODE_ID"]


async def test_metrics_after_a_refusal(gateway: Gateway) -> None:
    async with connect(gateway.ws_url) as client:
        await client.send(type="subscribe", channel="user.1")  # 401: no token
        assert (await client.recv())["type"] == "error"
        response = await aget(gateway, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("tidings_connections", "tidings_messages_in", "tidings_refusals"):
        assert re.search(rf"^{name}\S* ", text, re.MULTILINE), f"{name} not in\n{text}"
    refused = re.search(r'^tidings_refusals\S*\{[^}]*code="401"[^}]*\} (\S+)', text, re.MULTILINE)
    assert refused and float(refused.group(1)) >= 1, text


async def test_unknown_path_is_404(gateway: Gateway) -> None:
    response = await aget(gateway, "/nowhere")
    assert response.status_code == 404
    assert "/nowhere" in response.json()["error"]


async def test_get_broadcast_is_405(gateway: Gateway) -> None:
    response = await aget(gateway, "/broadcast")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert "error" in response.json()


async def test_demo_page_and_client_script(gateway: Gateway) -> None:
    page = await aget(gateway, "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()
    script = await aget(gateway, "/client.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "WebSocket" in script.text


async def test_demo_endpoints_are_off_without_demo_mode(gateway: Gateway) -> None:
    assert (await aget(gateway, "/demo/token?user=1")).status_code == 404
    response = await apost(
        gateway, "/demo/broadcast", {"channel": "public.a", "event": "e"}, key=None
    )
    assert response.status_code == 404


def _two_requests_on_one_connection(url: str) -> tuple[int, int, bool]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request(
            "POST",
            "/broadcast",
            body=json.dumps({"channel": "public.keepalive", "event": "e"}),
            headers={**auth(), "content-type": "application/json"},
        )
        second = connection.getresponse()
        second.read()
        return first.status, second.status, sock is not None and connection.sock is sock
    finally:
        connection.close()


async def test_keep_alive_serves_two_requests_on_one_connection(gateway: Gateway) -> None:
    first, second, same = await trio.to_thread.run_sync(
        _two_requests_on_one_connection, gateway.url
    )
    assert (first, second) == (200, 200)
    assert same, "the gateway closed the connection after the first request"

    def with_httpx() -> list[int]:
        with httpx.Client(base_url=gateway.url, timeout=WAIT) as client:
            return [client.get("/healthz").status_code for _ in range(3)]

    assert await trio.to_thread.run_sync(with_httpx) == [200, 200, 200]
