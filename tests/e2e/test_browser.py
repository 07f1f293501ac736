"""The demo page and /client.js in a real browser against a real gateway process.

Every wait is on a condition (Playwright's ``expect`` or ``wait_for_function``) with a timeout;
the only fixed wait is the window in which a refused client must *not* reconnect.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/demo.png"
MOBILE_SCREENSHOT = "/tmp/demo-mobile.png"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def wait_connected(page: Page, user: str | None = None) -> str:
    """Wait until the page's client is connected (as ``user``); returns the connection id."""
    page.wait_for_function(
        "(user) => window.tidings && tidings.state === 'connected' && tidings.userId === user",
        arg=user,
    )
    return str(page.evaluate("tidings.connectionId"))


def wait_subscribed(page: Page, *channels: str) -> None:
    page.wait_for_function(
        "(names) => names.every((name) => tidings.channel(name)?.state === 'subscribed')",
        arg=list(channels),
    )


def sign_in(page: Page, name: str) -> str:
    """Connect as ``name`` with the name form; returns the user id (the lowercased name)."""
    user = name.lower()
    page.fill("#name", name)
    page.click("#connect")
    wait_connected(page, user)
    channels = [f"user.{user}", "presence-chat.lobby", "public.announcements", "dashboard.metrics"]
    wait_subscribed(page, *channels)
    expect(page.locator("#user-id")).to_have_text(user)
    return user


def announcements(page: Page, text: str) -> Any:
    return page.locator("[data-testid=announcement]", has_text=text)


def notifications(page: Page, text: str) -> Any:
    return page.locator("[data-testid=notification]", has_text=text)


def member(page: Page, user: str) -> Any:
    return page.locator(f"[data-testid=member][data-user-id='{user}']")


def no_page_errors(*pages: Page) -> None:
    for page in pages:
        assert page.errors == [], f"errors on {page.url}: {page.errors}"


# -- Connecting ---------------------------------------------------------------------------------


def test_page_loads_and_connects_anonymously(new_page: Any, demo_gateway: Any) -> None:
    page = new_page()
    expect(page).to_have_title(re.compile("tidings"))
    expect(page.locator("#state")).to_have_text("connected")
    expect(page.locator("#node")).to_have_text("browser-test")
    connection_id = wait_connected(page, None)
    expect(page.locator("#connection-id")).to_have_text(connection_id)
    expect(page.locator("#user-id")).to_have_text("anonymous")
    wait_subscribed(page, "public.announcements", "dashboard.metrics")
    # Anonymous: the private parts wait for a name.
    expect(page.locator("#chat-text")).to_be_disabled()
    expect(page.locator("#notify")).to_be_disabled()
    no_page_errors(page)


def test_signing_in_connects_as_the_user(new_page: Any) -> None:
    page = new_page()
    wait_connected(page, None)
    anonymous_id = page.evaluate("tidings.connectionId")
    sign_in(page, "Alice")
    expect(page.locator("#connection-id")).not_to_have_text(anonymous_id)
    expect(page.locator("#notifications-channel")).to_have_text("user.alice")
    expect(member(page, "alice")).to_contain_text("Alice")
    expect(page.locator("#chat-text")).to_be_enabled()
    no_page_errors(page)


# -- Broadcasts -----------------------------------------------------------------------------------


def test_http_broadcast_appears_on_the_page(new_page: Any, demo_gateway: Any) -> None:
    page = new_page()
    wait_connected(page, None)
    wait_subscribed(page, "public.announcements")
    text = unique("Backend says hello")
    result = demo_gateway.broadcast(
        "public.announcements", "announcement", {"title": "From the backend", "message": text}
    )
    assert result["channel"] == "public.announcements"
    expect(announcements(page, text)).to_have_count(1)
    expect(announcements(page, text)).to_contain_text("From the backend")
    no_page_errors(page)


def test_announcement_box_reaches_every_page(new_page: Any) -> None:
    alice, visitor = new_page(), new_page()
    sign_in(alice, "Alice")
    wait_connected(visitor, None)
    wait_subscribed(visitor, "public.announcements")
    text = unique("Lunch is served")
    alice.fill("#announce-text", text)
    alice.click("#announce")
    for page in (alice, visitor):
        expect(announcements(page, text)).to_have_count(1)
        expect(announcements(page, text)).to_contain_text("From Alice")
    expect(alice.locator("#announce-text")).to_have_value("")
    no_page_errors(alice, visitor)


def test_notification_reaches_only_its_user(new_page: Any, demo_gateway: Any) -> None:
    alice, bob = new_page(), new_page()
    sign_in(alice, "Alice")
    sign_in(bob, "Bob")
    for_alice, for_bob = unique("Your order shipped"), unique("Your invoice is ready")
    demo_gateway.broadcast("user.alice", "notification", {"title": "Orders", "message": for_alice})
    expect(notifications(alice, for_alice)).to_have_count(1)
    # Bob's own notification is published after Alice's, so once it is on his page, Alice's
    # would have been too if it were ever going to reach him.
    demo_gateway.broadcast("user.bob", "notification", {"title": "Billing", "message": for_bob})
    expect(notifications(bob, for_bob)).to_have_count(1)
    expect(notifications(bob, for_alice)).to_have_count(0)
    expect(notifications(alice, for_bob)).to_have_count(0)
    expect(alice.locator("#unread")).to_have_text("1")
    no_page_errors(alice, bob)


def test_send_myself_a_notification_button(new_page: Any) -> None:
    page = new_page()
    sign_in(page, "Carol")
    page.click("#notify")
    expect(page.locator("[data-testid=notification]")).to_have_count(1)
    expect(page.locator("[data-testid=notification]").first).to_contain_text("Hello Carol")
    page.click("#notify")
    expect(page.locator("[data-testid=notification]")).to_have_count(2)
    expect(page.locator("#unread")).to_have_text("2")
    no_page_errors(page)


# -- Presence chat --------------------------------------------------------------------------------


def test_presence_chat_between_two_users(new_page: Any) -> None:
    alice, bob = new_page(), new_page()
    sign_in(alice, "Alice")
    sign_in(bob, "Bob")
    for page in (alice, bob):
        expect(member(page, "alice")).to_contain_text("Alice")
        expect(member(page, "bob")).to_contain_text("Bob")

    hello = unique("Hi Bob")
    alice.fill("#chat-text", hello)
    alice.click("#chat-send")
    expect(bob.locator("[data-testid=chat-message]", has_text=hello)).to_have_count(1)
    expect(bob.locator("[data-testid=chat-message]", has_text=hello)).to_contain_text("Alice")
    # The sender shows its own message once, locally: the gateway does not echo client events.
    mine = alice.locator("[data-testid=chat-message]", has_text=hello)
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-mine", "true")

    reply = unique("Hello Alice")
    bob.fill("#chat-text", reply)
    bob.click("#chat-send")
    expect(alice.locator("[data-testid=chat-message]", has_text=reply)).to_have_count(1)
    # Bob typed before sending: Alice saw it (the indicator clears once the message is in).
    expect(alice.locator("#typing")).to_have_text("")

    bob.close()
    expect(member(alice, "bob")).to_have_count(0)
    expect(member(alice, "alice")).to_have_count(1)
    expect(alice.locator("#chat-log")).to_contain_text("Bob left")
    no_page_errors(alice)


def test_a_user_in_two_windows_stays_online_until_both_close(
    new_page: Any, demo_gateway: Any
) -> None:
    alice, alice_again, bob = new_page(), new_page(), new_page()
    sign_in(alice, "Alice")
    sign_in(alice_again, "Alice")
    sign_in(bob, "Bob")
    expect(member(bob, "alice")).to_have_count(1)
    alice_again.close()
    # Once the gateway has let go of that connection, a leave (if any) is queued for bob ahead
    # of anything published later: a chat message from Alice's first window proves bob caught up.
    demo_gateway.wait_for_connections(2)
    text = unique("Still me")
    alice.fill("#chat-text", text)
    alice.click("#chat-send")
    expect(bob.locator("[data-testid=chat-message]", has_text=text)).to_have_count(1)
    expect(member(bob, "alice")).to_have_count(1)
    alice.close()
    expect(member(bob, "alice")).to_have_count(0)
    no_page_errors(bob)


def test_typing_indicator(new_page: Any) -> None:
    alice, bob = new_page(), new_page()
    sign_in(alice, "Alice")
    sign_in(bob, "Bob")
    expect(member(alice, "bob")).to_have_count(1)
    bob.locator("#chat-text").press_sequentially("hel")
    expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    no_page_errors(alice, bob)


# -- Dashboard ------------------------------------------------------------------------------------


def test_dashboard_numbers_move(new_page: Any) -> None:
    page = new_page()
    wait_subscribed(page, "dashboard.metrics")
    tick = page.locator("#metric-tick")
    expect(tick).to_have_text(re.compile(r"^#\d+$"), timeout=5_000)
    first = tick.inner_text()
    expect(tick).not_to_have_text(first, timeout=5_000)
    second = tick.inner_text()
    expect(tick).not_to_have_text(second, timeout=5_000)
    assert int(tick.inner_text()[1:]) > int(first[1:])
    expect(page.locator("#metric-orders")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#metric-cpu")).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(page.locator("#metric-revenue")).to_have_text(re.compile(r"\d"))
    points = page.locator("#spark-line").get_attribute("points") or ""
    assert len(points.split()) >= 2
    no_page_errors(page)


# -- Reconnect and resume -------------------------------------------------------------------------


def test_resume_after_disconnect_loses_nothing(new_page: Any, demo_gateway: Any) -> None:
    page = new_page()
    sign_in(page, "Dave")
    page.evaluate("tidings.disconnect()")
    expect(page.locator("#state")).to_have_text("disconnected")
    missed = unique("Sent while you were away")
    demo_gateway.broadcast(
        "public.announcements", "announcement", {"title": "A", "message": missed}
    )
    private = unique("Private while away")
    demo_gateway.broadcast("user.dave", "notification", {"title": "N", "message": private})
    assert page.evaluate("tidings.state") == "disconnected"
    page.evaluate("tidings.connect()")
    wait_connected(page, "dave")
    expect(announcements(page, missed)).to_have_count(1)
    expect(notifications(page, private)).to_have_count(1)
    # And nothing twice: a message sent after them arrives, and they are still there once.
    after = unique("After the resume")
    demo_gateway.broadcast("public.announcements", "announcement", {"title": "B", "message": after})
    expect(announcements(page, after)).to_have_count(1)
    expect(announcements(page, missed)).to_have_count(1)
    no_page_errors(page)


def test_reconnects_and_resumes_after_the_connection_drops(
    new_page: Any, demo_gateway: Any
) -> None:
    # A 2-3 s reconnect delay leaves time to publish while the page is surely disconnected.
    page = new_page("/?minDelay=3000&maxDelay=3000")
    sign_in(page, "Erin")
    before = page.evaluate("tidings.connectionId")
    seen = demo_gateway.broadcast(
        "public.announcements", "announcement", {"title": "A", "message": unique("before")}
    )
    page.wait_for_function(
        "(position) => tidings.channel('public.announcements').position === position",
        arg=seen["position"],
    )
    # Cut the socket under the client, as a network failure or a gateway would.
    page.evaluate("tidings._socket.close(4000, 'test: dropped')")
    expect(page.locator("#state")).not_to_have_text("connected")
    missed = unique("Published during the outage")
    demo_gateway.broadcast(
        "public.announcements", "announcement", {"title": "A", "message": missed}
    )
    private = unique("Private during the outage")
    demo_gateway.broadcast("user.erin", "notification", {"title": "N", "message": private})
    assert page.evaluate("tidings.state") != "connected", "reconnected before the test published"

    after = wait_connected(page, "erin")
    assert after != before
    expect(page.locator("#connection-id")).to_have_text(after)
    expect(announcements(page, missed)).to_have_count(1)
    expect(notifications(page, private)).to_have_count(1)
    expect(member(page, "erin")).to_have_count(1)
    sentinel = unique("sentinel")
    demo_gateway.broadcast(
        "public.announcements", "announcement", {"title": "S", "message": sentinel}
    )
    expect(announcements(page, sentinel)).to_have_count(1)
    expect(announcements(page, missed)).to_have_count(1)
    expect(notifications(page, private)).to_have_count(1)
    no_page_errors(page)


def test_chat_works_again_after_a_reconnect(new_page: Any) -> None:
    alice, bob = new_page("/?minDelay=100&maxDelay=200"), new_page()
    sign_in(alice, "Alice")
    sign_in(bob, "Bob")
    before = alice.evaluate("tidings.connectionId")
    alice.evaluate("tidings._socket.close(4000, 'test: dropped')")
    alice.wait_for_function(
        "(before) => tidings.state === 'connected' && tidings.connectionId !== before", arg=before
    )
    wait_subscribed(alice, "presence-chat.lobby")
    expect(member(alice, "bob")).to_have_count(1)
    expect(member(bob, "alice")).to_have_count(1)
    text = unique("Still here")
    alice.fill("#chat-text", text)
    alice.click("#chat-send")
    expect(bob.locator("[data-testid=chat-message]", has_text=text)).to_have_count(1)
    no_page_errors(alice, bob)


def test_a_silent_connection_is_replaced(new_page: Any) -> None:
    """A connection that stops answering pings (half-open, say) is dropped and replaced."""
    page = new_page("/?pingInterval=300&pongTimeout=700&minDelay=100&maxDelay=200")
    anonymous = wait_connected(page, None)
    muted: set[int] = set()
    routed: list[Any] = []

    def route(ws: Any) -> None:
        # Playwright sits between page and gateway; frames of a muted socket are swallowed.
        number = len(routed)
        routed.append(ws)
        server = ws.connect_to_server()
        ws.on_message(server.send)
        server.on_message(lambda message: None if number in muted else ws.send(message))

    page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    page.evaluate(
        "window.drops = []; void tidings.on('disconnected', (close) => drops.push(close.reason))"
    )
    page.evaluate("tidings.reconnect()")
    page.wait_for_function(
        "(before) => tidings.state === 'connected' && tidings.connectionId !== before",
        arg=anonymous,
    )
    first = page.evaluate("tidings.connectionId")
    assert len(routed) == 1
    muted.add(0)
    page.wait_for_function(
        "(before) => tidings.state === 'connected' && tidings.connectionId !== before",
        arg=first,
    )
    assert page.evaluate("drops") == ["no answer to ping"]
    wait_subscribed(page, "public.announcements", "dashboard.metrics")
    no_page_errors(page)


def test_gap_is_reported_when_history_is_too_short(new_page: Any, start_gateway: Any) -> None:
    short = start_gateway(REALTIME_HISTORY_SIZE="2")
    page = new_page(on=short)
    wait_connected(page, None)
    wait_subscribed(page, "public.announcements")
    page.evaluate(
        # (void: evaluate() would call the function that on() returns, which removes the listener)
        "window.gaps = []; void tidings.channel('public.announcements')"
        ".on('gap', (error) => gaps.push(error.code))"
    )
    page.evaluate("tidings.disconnect()")
    for number in range(5):
        short.broadcast(
            "public.announcements", "announcement", {"title": "x", "message": f"m{number}"}
        )
    page.evaluate("tidings.connect()")
    page.wait_for_function("gaps.length === 1")
    assert page.evaluate("gaps") == [410]
    expect(page.locator("[data-testid=toast]", has_text="Missed some announcements")).to_have_count(
        1
    )
    # The subscription is live again after the gap.
    live = unique("live after the gap")
    short.broadcast("public.announcements", "announcement", {"title": "x", "message": live})
    expect(announcements(page, live)).to_have_count(1)
    no_page_errors(page)


# -- Without demo mode: pasted tokens -------------------------------------------------------------


def test_without_demo_mode_a_pasted_token_connects(new_page: Any, start_gateway: Any) -> None:
    plain = start_gateway()
    page = new_page(on=plain)
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#name-form")).to_be_hidden()
    token = plain.token("frank", "--info", '{"name": "Frank"}', "--channels", "presence-**")
    page.fill("#token", token)
    page.click("#token-connect")
    wait_connected(page, "frank")
    wait_subscribed(page, "user.frank", "presence-chat.lobby")
    expect(member(page, "frank")).to_contain_text("Frank")
    text = unique("For Frank")
    plain.broadcast("user.frank", "notification", {"title": "Hi", "message": text})
    expect(notifications(page, text)).to_have_count(1)
    no_page_errors(page)


def test_a_refused_token_is_reported_and_not_retried(new_page: Any, start_gateway: Any) -> None:
    plain = start_gateway()
    page = new_page("/?minDelay=50&maxDelay=100", on=plain)
    page.evaluate("window.states = []; void tidings.on('state', (state) => states.push(state))")
    # Well-formed, but signed with another secret.
    forged = plain.token("mallory", "--channels", "presence-**")
    forged = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")
    page.fill("#token", forged)
    page.click("#token-connect")
    expect(page.locator("#signin-error")).to_contain_text("token refused")
    expect(page.locator("#state")).to_have_text("disconnected")
    attempts = page.evaluate("states.filter((state) => state === 'connecting').length")
    assert attempts >= 1
    # With a 50-100 ms backoff, a client that retried would have done so many times by now.
    page.wait_for_timeout(1500)
    assert page.evaluate("states.filter((state) => state === 'connecting').length") == attempts
    assert page.evaluate("tidings.state") == "disconnected"
    no_page_errors(page)


def test_an_expired_token_stops_with_an_error(new_page: Any, start_gateway: Any) -> None:
    plain = start_gateway()
    page = new_page("/?minDelay=50&maxDelay=100", on=plain)
    token = plain.token("grace", "--ttl", "5", "--channels", "presence-**")
    page.fill("#token", token)
    page.click("#token-connect")
    wait_connected(page, "grace")
    # The gateway cuts the connection when the token expires (4001); a pasted token cannot be
    # refreshed, so the client says so and stops instead of retrying a dead token.
    expect(page.locator("#signin-error")).to_contain_text("expired", timeout=15_000)
    expect(page.locator("#state")).to_have_text("disconnected")
    no_page_errors(page)


# -- The client on its own ------------------------------------------------------------------------


def test_client_api_in_the_page(new_page: Any, demo_gateway: Any) -> None:
    """Subscribe, trigger and unsubscribe through /client.js directly, without the demo UI."""
    page = new_page()
    wait_connected(page, None)
    result = page.evaluate(
        """async () => {
            const { Tidings, channelKind } = await import('/client.js');
            const response = await fetch('/demo/token?user=api&name=Api');
            const { token } = await response.json();
            const rt = new Tidings(undefined, { token: () => token });
            const out = {};
            out.kinds = ['presence-x', 'user.1', 'news'].map(channelKind);
            const refused = rt.subscribe('user.somebody-else');
            out.refused = await new Promise((ok) => refused.on('error', (e) => ok(e.code)));
            out.refusedState = refused.state;
            out.held = [...rt.subscriptions.keys()];
            const attempt = (fn) => { try { fn(); } catch (e) { return e.name; } };
            out.publicTrigger = attempt(() => rt.subscribe('news').trigger('client-x'));
            out.badName = attempt(() => rt.subscribe('private-x').trigger('nope'));
            const room = rt.subscribe('presence-api.room');
            out.members = await new Promise((ok) => room.on('presence', (m) => ok([...m.keys()])));
            rt.unsubscribe('news');
            out.afterUnsubscribe = [...rt.subscriptions.keys()].sort();
            rt.close();
            out.state = rt.state;
            out.roomState = room.state;
            return out;
        }"""
    )
    assert result == {
        "kinds": ["presence", "private", "public"],
        "refused": 403,
        "refusedState": "failed",
        "held": [],
        "publicTrigger": "TypeError",
        "badName": "TypeError",
        "members": ["api"],
        "afterUnsubscribe": ["presence-api.room", "private-x"],
        "state": "closed",
        "roomState": "unsubscribed",
    }
    no_page_errors(page)


def test_subscriptions_refused_by_the_rate_limit_are_asked_again(
    new_page: Any, start_gateway: Any
) -> None:
    strict = start_gateway(REALTIME_RATE_LIMIT="5", REALTIME_RATE_BURST="5")
    page = new_page(on=strict)
    wait_connected(page, None)
    result = page.evaluate(
        """async () => {
            const { Tidings } = await import('/client.js');
            const rt = new Tidings();
            const errors = [];
            rt.on('error', (error) => errors.push(error.code));
            const names = Array.from({ length: 12 }, (_, i) => `news.${i}`);
            const subs = names.map((name) => rt.subscribe(name));
            await Promise.all(subs.map((sub) => new Promise((ok) => sub.once('subscribed', ok))));
            const out = { states: subs.map((sub) => sub.state), limited: errors.includes(429) };
            rt.close();
            return out;
        }"""
    )
    assert result == {"states": ["subscribed"] * 12, "limited": True}
    no_page_errors(page)


# -- Looks ----------------------------------------------------------------------------------------


def test_screenshots(new_page: Any, browser: Any, demo_gateway: Any) -> None:
    """Screenshots of a lively page (desktop and phone) for a human to look at."""
    alice, bob = new_page(), new_page()
    sign_in(alice, "Alice")
    sign_in(bob, "Bob")
    expect(member(alice, "bob")).to_have_count(1)
    bob.fill("#chat-text", "Hi Alice! Did the release go out?")
    bob.click("#chat-send")
    alice.fill("#chat-text", "Yes, ten minutes ago. Dashboards look good.")
    alice.click("#chat-send")
    expect(alice.locator("[data-testid=chat-message]")).to_have_count(2)
    demo_gateway.broadcast(
        "public.announcements",
        "announcement",
        {
            "title": "Release 2.4",
            "message": "Presence channels and resumable subscriptions are live.",
        },
    )
    demo_gateway.broadcast(
        "user.alice",
        "notification",
        {"title": "Order #1042 shipped", "message": "It arrives on Friday."},
    )
    expect(alice.locator("[data-testid=notification]")).to_have_count(1)
    alice.wait_for_function(
        "document.querySelectorAll('#spark-line')[0].getAttribute('points').split(' ').length >= 3"
    )
    alice.screenshot(path=SCREENSHOT, full_page=True)

    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    try:
        phone = context.new_page()
        phone.goto(demo_gateway.url + "/")
        phone.wait_for_function("window.tidings && tidings.state === 'connected'")
        expect(phone.locator("#metric-tick")).to_have_text(re.compile(r"^#\d+$"))
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        phone.screenshot(path=MOBILE_SCREENSHOT, full_page=True)
    finally:
        context.close()
    no_page_errors(alice, bob)
