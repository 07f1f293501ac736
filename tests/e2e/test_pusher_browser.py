"""pusher-js 8 (its browser build, from npm) in headless Chromium against a gateway: a public
channel fed by a broadcast, and a presence channel whose members come and go, authorized by
Pusher's own Python library."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pusher
import pytest
from tests.e2e.conftest import Gateway
from tests.pusher_js.support import APP_ID, APP_KEY, APP_SECRET, NODE_DIR, PUSHER_ENV

pytestmark = pytest.mark.browser

PUSHER_JS = NODE_DIR / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js"
USERS = {"ann": {"name": "Ann"}, "ben": {"name": "Ben"}}

CONNECT = """([key, host, port, user]) => {
  window.seen = [];
  window.client = new Pusher(key, {
    wsHost: host, wsPort: port, forceTLS: false, enabledTransports: ["ws"], disableStats: true,
    cluster: "mt1",
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) =>
        window.authorize(socketId, channelName, user)
          .then((answer) => callback(null, JSON.parse(answer)))
    },
  });
  return new Promise((resolve) => window.client.connection.bind("connected", () => resolve(true)));
}"""

SUBSCRIBE = """(channel) => {
  const subscription = window.client.subscribe(channel);
  subscription.bind_global((event, data) => window.seen.push({ event, data }));
  return new Promise((resolve) => subscription.bind("pusher:subscription_succeeded", () =>
    resolve(subscription.members ? Object.keys(subscription.members.members).sort() : true)));
}"""


def _authorizer() -> Callable[[str, str, str], str]:
    client = pusher.Pusher(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET)

    def authorize(socket_id: str, channel: str, user: str) -> str:
        member = (
            {"user_id": user, "user_info": USERS[user]} if channel.startswith("presence-") else None
        )
        return json.dumps(client.authenticate(channel, socket_id, member))

    return authorize


def _page(new_page: Callable[..., Any], gateway: Gateway, user: str) -> Any:
    page = new_page("/", on=gateway)
    page.add_script_tag(path=str(PUSHER_JS))
    page.expose_function("authorize", _authorizer())
    host, port = gateway.url.removeprefix("http://").split(":")
    assert page.evaluate(CONNECT, [APP_KEY, host, int(port), user]) is True
    return page


def _seen(page: Any, event: str) -> Any:
    page.wait_for_function(f"window.seen.some((e) => e.event === {json.dumps(event)})")
    return [e for e in page.evaluate("window.seen") if e["event"] == event]


def test_pusher_js_in_chromium_on_a_public_and_a_presence_channel(
    new_page: Callable[..., Any], start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(**PUSHER_ENV)
    ann = _page(new_page, gateway, "ann")
    assert ann.evaluate(SUBSCRIBE, "news-browser") is True
    gateway.post("/broadcast", {"channel": "news-browser", "event": "headline", "data": {"n": 1}})
    assert _seen(ann, "headline")[0]["data"] == {"n": 1}

    assert ann.evaluate(SUBSCRIBE, "presence-browser") == ["ann"]
    ben = _page(new_page, gateway, "ben")
    assert ben.evaluate(SUBSCRIBE, "presence-browser") == ["ann", "ben"]
    assert _seen(ann, "pusher:member_added")[0]["data"] == {"id": "ben", "info": {"name": "Ben"}}
    ben.evaluate("window.client.disconnect()")
    assert _seen(ann, "pusher:member_removed")[0]["data"]["id"] == "ben"
    assert not ann.errors and not ben.errors
