"""Pusher's HTTP API request signing: round trips, tampering, the clock, Pusher's own example."""

from __future__ import annotations

import pusher
import pusher.http
import pusher.pusher_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.domain.pusher.signing import (
    MAX_CLOCK_SKEW,
    RequestRefused,
    body_md5,
    sign,
    string_to_sign,
    verify,
)

KEY, SECRET, NOW = "app-key", "app-secret", 1_700_000_000

methods = st.sampled_from(["GET", "POST"])
paths = st.from_regex(r"/apps/[0-9]{1,6}(/[A-Za-z0-9_\-=@,.;]{1,20}){0,3}", fullmatch=True)
param_names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
    lambda name: not name.startswith("auth_") and name != "body_md5"
)
queries = st.dictionaries(param_names, st.text(max_size=20), max_size=4)
bodies = st.binary(max_size=200)
skews = st.integers(-MAX_CLOCK_SKEW, MAX_CLOCK_SKEW)


def _verify(method: str, path: str, query: dict[str, str], body: bytes, now: float = NOW) -> None:
    verify(method, path, query, body, key=KEY, secret=SECRET, now=now)


def _refusal(method: str, path: str, query: dict[str, str], body: bytes) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        _verify(method, path, query, body)
    return caught.value


@given(methods, paths, queries, bodies, skews)
def test_a_signed_request_is_accepted_within_the_clock_skew(
    method: str, path: str, query: dict[str, str], body: bytes, skew: int
) -> None:
    signed = sign(method, path, query, body, key=KEY, secret=SECRET, timestamp=NOW + skew)
    _verify(method, path, signed, body)


@given(methods, paths, queries, bodies, st.integers(MAX_CLOCK_SKEW + 1, 10**9))
def test_a_stale_or_future_timestamp_is_refused(
    method: str, path: str, query: dict[str, str], body: bytes, skew: int
) -> None:
    for timestamp in (NOW - skew, NOW + skew):
        signed = sign(method, path, query, body, key=KEY, secret=SECRET, timestamp=timestamp)
        refusal = _refusal(method, path, signed, body)
        assert refusal.status == 401
        assert refusal.message.startswith("Timestamp expired: Given timestamp")


@given(methods, paths, queries, bodies, param_names, st.text(max_size=20))
def test_a_changed_parameter_breaks_the_signature(
    method: str, path: str, query: dict[str, str], body: bytes, name: str, value: str
) -> None:
    signed = sign(method, path, query, body, key=KEY, secret=SECRET, timestamp=NOW)
    if signed.get(name) == value:
        return
    refusal = _refusal(method, path, {**signed, name: value}, body)
    assert (refusal.status, refusal.message.split(":")[0]) == (401, "Invalid signature")


@given(methods, paths, queries, bodies, bodies)
def test_a_changed_body_is_refused(
    method: str, path: str, query: dict[str, str], body: bytes, other: bytes
) -> None:
    signed = sign(method, path, query, body, key=KEY, secret=SECRET, timestamp=NOW)
    if other == body:
        return
    refusal = _refusal(method, path, signed, other)
    assert refusal.status == 401
    assert refusal.message.split(":")[0] in ("Invalid body_md5", "Missing body_md5")


@given(methods, paths, queries, bodies)
def test_a_wrong_secret_or_path_or_method_is_refused(
    method: str, path: str, query: dict[str, str], body: bytes
) -> None:
    wrong = sign(method, path, query, body, key=KEY, secret="not-the-secret", timestamp=NOW)
    assert _refusal(method, path, wrong, body).message.startswith("Invalid signature")
    right = sign(method, path, query, body, key=KEY, secret=SECRET, timestamp=NOW)
    assert _refusal(method, path + "x", right, body).message.startswith("Invalid signature")
    other = "POST" if method == "GET" else "GET"
    assert _refusal(other, path, right, body).message.startswith("Invalid signature")


@given(queries, st.sampled_from(["auth_key", "auth_timestamp", "auth_version", "auth_signature"]))
def test_a_missing_auth_parameter_is_named(query: dict[str, str], name: str) -> None:
    signed = sign("GET", "/apps/1/channels", query, b"", key=KEY, secret=SECRET, timestamp=NOW)
    del signed[name]
    refusal = _refusal("GET", "/apps/1/channels", signed, b"")
    assert refusal.status == 401
    assert name in refusal.message


@pytest.mark.parametrize(
    ("name", "value", "start"),
    [
        ("auth_key", "someone-else", "Unknown auth_key"),
        ("auth_version", "2.0", "Unsupported auth_version"),
        ("auth_timestamp", "yesterday", "Invalid auth_timestamp"),
        ("auth_timestamp", "9" * 5000, "Invalid auth_timestamp"),
        ("auth_signature", "é" * 64, "Invalid signature"),
    ],
)
def test_bad_auth_parameters_are_named(name: str, value: str, start: str) -> None:
    signed = sign("GET", "/apps/1/channels", {}, b"", key=KEY, secret=SECRET, timestamp=NOW)
    refusal = _refusal("GET", "/apps/1/channels", {**signed, name: value}, b"")
    assert refusal.status == 401
    assert refusal.message.startswith(start)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=5))
def test_the_string_to_sign_ignores_order_and_key_case_and_the_signature(
    query: dict[str, str],
) -> None:
    reordered = dict(reversed(list(query.items())))
    assert string_to_sign("get", "/p", query) == string_to_sign("GET", "/p", reordered)
    assert string_to_sign("GET", "/p", {**query, "auth_signature": "x"}) == string_to_sign(
        "GET", "/p", {k: v for k, v in query.items() if k.lower() != "auth_signature"}
    )


def test_pushers_worked_example() -> None:
    """The example of Pusher's HTTP API reference, to the last digit."""
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    assert body_md5(body) == "ec365a775a4cd0599faeb73354201b6f"
    signed = sign(
        "POST",
        "/apps/3/events",
        {},
        body,
        key="278d425bdf160c739803",
        secret="7ad3773142a6692b25b8",
        timestamp=1353088179,
    )
    assert signed["auth_signature"] == (
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


@given(methods, queries)
def test_what_the_pusher_library_signs_is_accepted(method: str, query: dict[str, str]) -> None:
    """The Python ``pusher`` library as the oracle: its signing and ours agree (a GET signs
    its parameters in the query, a POST sends them as a JSON body and signs its MD5)."""
    client = pusher.pusher_client.PusherClient(app_id="1", key=KEY, secret=SECRET)
    request = pusher.http.Request(client, method, "/apps/1/events", dict(query))
    verify(
        method,
        "/apps/1/events",
        request.query_params,
        request.body,
        key=KEY,
        secret=SECRET,
        now=int(request.query_params["auth_timestamp"]),
    )
