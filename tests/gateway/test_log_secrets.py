"""No token is ever logged, in either log format, even at ``--log-level debug``.

Tokens reach the gateway in ``?token=`` query strings (WebSocket and event streams), in
``Authorization`` headers (the API key of ``POST /broadcast``) and, from a confused or hostile
client, in frames. A gateway at DEBUG is driven through each with recognizable values, valid and
invalid, and its whole stderr is searched for them. The same run checks what the JSON lines of
connection open, refusal and close carry.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import trio

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env
from tests.support.sse import open_stream
from tests.support.wsclient import connect

from .support import WAIT, close_code, token, unique


def _secrets() -> dict[str, str]:
    marker = secrets.token_hex(6)
    return {
        "valid": token(f"leak-{marker}", channels=("private-team.**",)),
        "invalid": f"not-a-jwt-LEAKCHECK-{marker}",
        "bad_signature": token("someone")[:-6] + "AAAAAA",
        "in_frame": f"frame-token-LEAKCHECK-{marker}",
        "wrong_key": f"wrong-api-key-LEAKCHECK-{marker}",
    }


async def _drive(gateway: Gateway, tokens: dict[str, str]) -> None:
    """Every way a token reaches the gateway."""
    channel = unique("private-team.leak")
    async with connect(gateway.ws_url, token=tokens["valid"]) as client:
        await client.subscribe(channel)
        await client.send(type="subscribe", channel=channel, token=tokens["in_frame"])
        await client.send_raw(json.dumps({"type": "auth", "token": tokens["in_frame"]}))
        await client.send(type="subscribe", channel="private-admin.x", token=tokens["in_frame"])
        await client.recv(WAIT)
    for refused in ("invalid", "bad_signature"):
        async with connect(gateway.ws_url, token=tokens[refused]) as client:
            assert await close_code(client) == 4401
    async with open_stream(gateway.url, channel, token=tokens["valid"]) as stream:
        assert stream.status == 200
    async with open_stream(gateway.url, channel, token=tokens["invalid"]) as stream:
        assert stream.status == 401

    def http() -> None:
        for key in (tokens["wrong_key"], API_KEY):
            httpx.post(
                gateway.url + "/broadcast",
                json={"channel": channel, "event": "e"},
                headers={"authorization": f"Bearer {key}"},
                timeout=WAIT,
            )
        httpx.get(gateway.url + f"/healthz?token={tokens['valid']}", timeout=WAIT)

    await trio.to_thread.run_sync(http)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_token_is_ever_logged(log_format: str) -> None:
    tokens = _secrets()
    gateway = Gateway(
        process_env(
            REALTIME_BROKER="memory",
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_NODE_ID="leak-node",
            REALTIME_CHANNEL_RULES="private-team.*=authenticated;private-admin.*=users:1",
            REALTIME_LOG_FORMAT=log_format,
        ),
        options=("--log-level", "debug"),
    )
    try:
        await _drive(gateway, tokens)
    finally:
        assert gateway.stop() == 0, gateway.output()
    stderr = "\n".join(gateway.stderr.lines)
    assert "connection" in stderr and "closed" in stderr, "DEBUG logging did not run:\n" + stderr
    for what, value in {**tokens, "api key": API_KEY, "secret": SECRET}.items():
        assert value not in stderr, f"the {what} was logged:\n{stderr}"
        assert value[-24:] not in stderr, f"part of the {what} was logged:\n{stderr}"
    if log_format == "json":
        entries = [json.loads(line) for line in gateway.stderr.lines]  # every line is JSON
        assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
        closes = [e for e in entries if e.get("node") == "leak-node" and "code" in e]
        assert {1000, 4401} <= {e["code"] for e in closes}, entries
        assert any(e.get("connection") for e in closes), entries
        assert any(e.get("channel", "").startswith("private-admin") for e in entries), entries
