"""The Pusher protocol's pure rules: socket ids, signatures, channel kinds, codes, frames, apps."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.domain.strategies import HEAVY, channels, event_names, json_values
from tidings.domain import Channel
from tidings.domain.pusher import (
    CloseAction,
    InvalidPusherApps,
    PusherApp,
    PusherApps,
    PusherChannelKind,
    PusherCode,
    PusherFrameError,
    channel_auth,
    channel_text,
    check_auth,
    close_action,
    decode_pusher_frame,
    frames,
    is_cache,
    is_socket_id,
    needs_auth,
    parse_apps,
    pusher_close_code,
    pusher_kind,
    socket_id,
    takes_client_events,
    user_auth,
    user_text,
)
from tidings.domain.pusher.frames import (
    PusherClientEvent,
    PusherPing,
    PusherPong,
    PusherSignin,
    PusherSubscribe,
    PusherUnsubscribe,
    PusherUserSubscribe,
    PusherUserUnsubscribe,
    parse_channel_data,
    parse_user_data,
)

PRIVATE, PRESENCE = PusherChannelKind.PRIVATE, PusherChannelKind.PRESENCE
naturals = st.integers(min_value=0, max_value=10**15)
secrets_ = st.text(min_size=1, max_size=40)
keys = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
socket_ids = st.builds(socket_id, naturals, naturals)
channel_data = st.one_of(st.none(), st.text(max_size=60))


# -- Socket ids ---------------------------------------------------------------------------------


@given(naturals, naturals)
def test_a_socket_id_is_two_numbers_joined_by_a_dot(first: int, second: int) -> None:
    made = socket_id(first, second)
    assert is_socket_id(made)
    assert made == f"{first}.{second}"


@pytest.mark.parametrize("text", ["", "1", "1.", ".1", "1.2.3", "a.b", "1 .2", "-1.2", 12, None])
def test_anything_else_is_no_socket_id(text: object) -> None:
    assert not is_socket_id(text)


def test_a_negative_part_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        socket_id(-1, 2)


# -- Signatures ---------------------------------------------------------------------------------


@given(keys, secrets_, socket_ids, channels, channel_data)
def test_a_channel_authorization_checks_out(
    key: str, secret: str, sid: str, channel: Channel, data: str | None
) -> None:
    auth = channel_auth(key, secret, sid, channel.name, data)
    assert check_auth(auth, key, secret, channel_text(sid, channel.name, data))


@given(keys, secrets_, socket_ids, channels, channel_data)
def test_it_is_pushers_hmac_sha256_of_the_documented_text(
    key: str, secret: str, sid: str, channel: Channel, data: str | None
) -> None:
    text = f"{sid}:{channel.name}" + ("" if data is None else f":{data}")
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert channel_auth(key, secret, sid, channel.name, data) == f"{key}:{digest}"


@given(keys, secrets_, secrets_, socket_ids, channels)
def test_another_secret_another_socket_or_another_key_fails(
    key: str, secret: str, other: str, sid: str, channel: Channel
) -> None:
    auth = channel_auth(key, secret, sid, channel.name)
    if other != secret:
        assert not check_auth(channel_auth(key, other, sid, channel.name), key, secret,
                              channel_text(sid, channel.name))  # fmt: skip
    assert not check_auth(auth, key, secret, channel_text(sid + "0", channel.name))
    assert not check_auth(auth, key + "x", secret, channel_text(sid, channel.name))
    assert not check_auth(auth.replace(":", "", 1), key, secret, channel_text(sid, channel.name))


@given(keys, secrets_, socket_ids, st.text(max_size=80))
def test_a_user_sign_in_checks_out_and_only_for_its_data(
    key: str, secret: str, sid: str, user_data: str
) -> None:
    auth = user_auth(key, secret, sid, user_data)
    assert check_auth(auth, key, secret, user_text(sid, user_data))
    assert user_text(sid, user_data) == f"{sid}::user::{user_data}"
    assert not check_auth(auth, key, secret, user_text(sid, user_data + " "))


def test_the_python_pusher_library_agrees() -> None:
    """The signatures of Pusher's own server library (the test group's ``pusher``) check out."""
    import pusher

    client = pusher.Pusher(app_id="1", key="app-key", secret="app-secret")
    member = {"user_id": "7", "user_info": {"name": "Ann"}}
    answer = client.authenticate("presence-room", "123.456", member)
    text = channel_text("123.456", "presence-room", answer["channel_data"])
    assert check_auth(answer["auth"], "app-key", "app-secret", text)
    signed = client.authenticate_user("123.456", {"id": "7"})
    assert check_auth(
        signed["auth"], "app-key", "app-secret", user_text("123.456", signed["user_data"])
    )


# -- Channel kinds ------------------------------------------------------------------------------

KINDS = [
    ("news", PusherChannelKind.PUBLIC, False),
    ("cache-news", PusherChannelKind.PUBLIC, True),
    ("private-a", PusherChannelKind.PRIVATE, False),
    ("private-cache-a", PusherChannelKind.PRIVATE, True),
    ("presence-a", PusherChannelKind.PRESENCE, False),
    ("presence-cache-a", PusherChannelKind.PRESENCE, True),
    ("private-encrypted-a", PusherChannelKind.PRIVATE_ENCRYPTED, False),
    ("private-encrypted-cache-a", PusherChannelKind.PRIVATE_ENCRYPTED, True),
]


@pytest.mark.parametrize(("name", "kind", "cache"), KINDS)
def test_the_prefix_says_the_kind(name: str, kind: PusherChannelKind, cache: bool) -> None:
    assert pusher_kind(name) is kind
    assert is_cache(name) is cache
    assert needs_auth(name) is (kind is not PusherChannelKind.PUBLIC)


@given(channels, st.sampled_from(KINDS[1:]))
def test_a_prefix_decides_whatever_follows(
    channel: Channel, row: tuple[str, PusherChannelKind, bool]
) -> None:
    prefix = row[0].removesuffix("a").removesuffix("news")
    # A name that goes on with a longer prefix's rest is that longer prefix's channel.
    assume(not channel.name.startswith(("encrypted-", "cache-")))
    name = prefix + channel.name
    assert pusher_kind(name) is row[1]
    assert is_cache(name) is row[2]
    assert takes_client_events(name) is (row[1] in (PRIVATE, PRESENCE))


# -- Codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (4001, CloseAction.REFUSED),
        (4100, CloseAction.BACKOFF),
        (4201, CloseAction.RETRY),
        (4301, CloseAction.REFUSED),
    ],
)
def test_pushers_ranges_tell_a_client_what_to_do(code: int, action: CloseAction) -> None:
    assert close_action(code) is action


@pytest.mark.parametrize(
    ("tidings", "action"),
    [
        (1001, CloseAction.RETRY),
        (4000, CloseAction.RETRY),
        (4008, CloseAction.BACKOFF),
        (4029, CloseAction.REFUSED),
        (1011, CloseAction.RETRY),
    ],
)
def test_tidings_closes_keep_their_advice_in_pushers_codes(
    tidings: int, action: CloseAction
) -> None:
    assert close_action(pusher_close_code(tidings)) is action


def test_every_code_has_pushers_message() -> None:
    assert all(frames.error("x", code) for code in PusherCode)


# -- Frames -------------------------------------------------------------------------------------


@given(channels, st.one_of(st.none(), st.text(max_size=80)), channel_data, st.booleans())
def test_a_subscribe_frame_decodes_as_sent(
    channel: Channel, auth: str | None, data: str | None, as_string: bool
) -> None:
    payload: dict[str, object] = {"channel": channel.name}
    if auth is not None:
        payload["auth"] = auth
    if data is not None:
        payload["channel_data"] = data
    body = json.dumps(payload) if as_string else payload
    frame = decode_pusher_frame(json.dumps({"event": "pusher:subscribe", "data": body}))
    assert frame == PusherSubscribe(channel, auth, data)


@given(channels, event_names.map(lambda e: "client-" + e[:150]), json_values)
def test_a_client_event_decodes_as_sent(channel: Channel, event: str, data: object) -> None:
    text = json.dumps({"event": event, "channel": channel.name, "data": data})
    assert decode_pusher_frame(text) == PusherClientEvent(channel, event, data)  # type: ignore[arg-type]


def test_the_other_frames_decode() -> None:
    assert decode_pusher_frame('{"event":"pusher:ping","data":{}}') == PusherPing()
    assert decode_pusher_frame('{"event":"pusher:pong"}') == PusherPong()
    unsubscribe = '{"event":"pusher:unsubscribe","data":{"channel":"a"}}'
    assert decode_pusher_frame(unsubscribe) == PusherUnsubscribe(Channel("a"))
    signin = '{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{}"}}'
    assert decode_pusher_frame(signin) == PusherSignin("k:s", "{}")
    user = '{"event":"pusher:subscribe","data":{"channel":"#server-to-user-7"}}'
    assert decode_pusher_frame(user) == PusherUserSubscribe("7", "#server-to-user-7")
    leave = user.replace("pusher:subscribe", "pusher:unsubscribe")
    assert decode_pusher_frame(leave) == PusherUserUnsubscribe("7", "#server-to-user-7")


BAD_FRAMES = [
    (b"{}", "binary"),
    ("nope", "not valid JSON"),
    ("[1]", "JSON object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{}", "'event'"),
    ('{"event": 5}', "'event'"),
    ('{"event":"pusher:subscribe"}', "JSON object"),
    ('{"event":"pusher:subscribe","data":"{"}', "not valid JSON"),
    ('{"event":"pusher:subscribe","data":{}}', "'channel'"),
    ('{"event":"pusher:subscribe","data":{"channel":7}}', "string"),
    ('{"event":"pusher:subscribe","data":{"channel":"a b"}}', "not allowed"),
    ('{"event":"pusher:subscribe","data":{"channel":"a","auth":1}}', "'auth'"),
    ('{"event":"pusher:subscribe","data":{"channel":"a","auth":"' + "x" * 2000 + '"}}', "long"),
    ('{"event":"pusher:subscribe","data":{"channel":"a","channel_data":{}}}', "channel_data"),
    ('{"event":"pusher:signin","data":{"auth":"k:s"}}', "user_data"),
    ('{"event":"pusher:signin","data":{"auth":1,"user_data":"{}"}}', "string"),
    ('{"event":"pusher:bogus"}', "unknown event"),
    ('{"event":"client-x"}', "'channel'"),
    ('{"event":"client-' + "x" * 300 + '","channel":"a"}', "too long"),
]


@pytest.mark.parametrize(("text", "says"), BAD_FRAMES)
def test_a_bad_frame_is_refused_saying_what_is_wrong(text: str | bytes, says: str) -> None:
    with pytest.raises(PusherFrameError, match=says) as refused:
        decode_pusher_frame(text)
    assert refused.value.code is None  # the connection survives it


@given(st.text(max_size=200))
def test_no_text_breaks_the_decoder(text: str) -> None:
    try:
        decode_pusher_frame(text)
    except PusherFrameError:
        pass


@given(st.one_of(st.text(min_size=1, max_size=20), st.integers()), json_values)
def test_channel_data_gives_the_member(user_id: str | int, info: object) -> None:
    text = json.dumps({"user_id": user_id, "user_info": info})
    if isinstance(user_id, str) and not user_id.isprintable():
        with pytest.raises(PusherFrameError):
            parse_channel_data(text, "presence-a")
        return
    assert parse_channel_data(text, "presence-a") == (str(user_id), info)


@pytest.mark.parametrize("text", [None, "[]", '{"user_id":true}', '{"user_id":""}', '{"x":1}'])
def test_bad_channel_data_refuses_the_subscription(text: str | None) -> None:
    with pytest.raises(PusherFrameError) as refused:
        parse_channel_data(text, "presence-a")
    assert refused.value.status == 400
    assert refused.value.channel == "presence-a"


def test_user_data_needs_an_id() -> None:
    assert parse_user_data('{"id":"7","user_info":{"a":1}}') == ("7", {"a": 1})
    with pytest.raises(PusherFrameError, match="user id"):
        parse_user_data('{"name":"x"}')


@given(channels, event_names, json_values)
def test_an_event_goes_out_with_its_data_as_a_string(
    channel: Channel, event: str, data: object
) -> None:
    frame = json.loads(frames.event(channel.name, event, data))  # type: ignore[arg-type]
    assert frame["channel"] == channel.name
    assert frame["event"] == event
    assert isinstance(frame["data"], str)
    assert frame["data"] == data if isinstance(data, str) else json.loads(frame["data"]) == data


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=8), json_values),
        max_size=5,
        unique_by=lambda m: m[0],
    )
)
def test_presence_subscription_succeeded_holds_pushers_presence_hash(
    members: list[tuple[str, object]],
) -> None:
    frame = json.loads(frames.subscription_succeeded("presence-a", members))  # type: ignore[arg-type]
    presence = json.loads(frame["data"])["presence"]
    assert presence["ids"] == [user for user, _ in members]
    assert presence["count"] == len(members)
    assert presence["hash"] == dict(members)


def test_connection_established_double_encodes_its_data() -> None:
    frame = json.loads(frames.connection_established("1.2", 60))
    assert frame["event"] == "pusher:connection_established"
    assert json.loads(frame["data"]) == {"socket_id": "1.2", "activity_timeout": 60}


# -- Apps ---------------------------------------------------------------------------------------


@HEAVY
@given(
    st.lists(
        st.tuples(keys, keys, secrets_), max_size=4, unique_by=(lambda a: a[0], lambda a: a[1])
    )
)
def test_apps_round_trip_through_pusher_apps_json(entries: list[tuple[str, str, str]]) -> None:
    text = json.dumps([{"id": i, "key": k, "secret": s} for i, k, s in entries])
    apps = PusherApps.of(parse_apps(text))
    for app_id, key, secret in entries:
        assert apps.by_key(key) == apps.by_id(app_id) == PusherApp(app_id, key, secret)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nope", "not JSON"),
        ("{}", "JSON list"),
        ("[1]", "app 0: an object"),
        ('[{"id":"1","key":"k"}]', "missing secret"),
        ('[{"id":"1","key":"k","secret":"s","x":1}]', "unknown field"),
        ('[{"id":"1 1","key":"k","secret":"s"}]', "app 0: Pusher app id"),
        ('[{"id":"1","key":"k","secret":"s"},{"id":"2","key":"k","secret":"t"}]', "key 'k'"),
    ],
)
def test_bad_apps_are_refused_naming_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidPusherApps, match=says):
        PusherApps.of(parse_apps(text))


def test_an_app_never_shows_its_secret() -> None:
    assert "hush" not in repr(PusherApp("1", "k", "hush"))
