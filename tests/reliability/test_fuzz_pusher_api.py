"""Fuzzing Pusher's HTTP API (``/apps/{app_id}/...``): generated events and batches, signed
right so that they reach the parsing, and generated paths, queries and signatures that must not.

Invariants: no 5xx (but 503, a broker refusal); every refusal is plain text naming its cause;
what is not signed right is a 401 and publishes nothing; the gateway stays healthy.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.processes import Gateway
from tidings.domain.pusher.signing import sign

from .conftest import LIVE_HYPOTHESIS, assert_serving, record, running_gateway

APP_ID, KEY, SECRET = "31", "fuzz-key", "fuzz-secret"
READ_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pusher_gateway() -> Iterator[Gateway]:
    with running_gateway(
        PUSHER_APP_ID=APP_ID, PUSHER_APP_KEY=KEY, PUSHER_APP_SECRET=SECRET
    ) as gateway:
        yield gateway


STATUSES: dict[str, Counter[int]] = {"bodies": Counter(), "paths": Counter()}
"""Answers by status, per test, for docs/reliability.md (``record``)."""


@pytest.fixture(scope="module")
def http(pusher_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pusher_gateway.url, timeout=READ_TIMEOUT) as client:
        yield client
    for name, statuses in STATUSES.items():
        record(
            f"fuzz_pusher_api.{name}",
            requests_total=sum(statuses.values()),
            responses_by_status={str(k): v for k, v in sorted(statuses.items())},
        )


names = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["news", "presence-chat.a", "private-team.x", "a" * 165, "", "a..b"]),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=40),
    st.lists(names, max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
events = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=210), values),
        "data": st.one_of(st.text(max_size=200), st.just("x" * 10_241), values),
        "channel": st.one_of(names, values),
        "channels": st.one_of(st.lists(names, max_size=3), st.just(["a"] * 101), values),
        "socket_id": st.one_of(st.sampled_from(["1.2", "1.", "a.b", "1.2.3"]), values),
        "info": st.one_of(st.sampled_from(["subscription_count", "user_count", "x"]), values),
    },
)
good_events = st.fixed_dictionaries(
    {
        "name": st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1),
        "data": st.text(max_size=200),
        "channel": st.sampled_from(["news", "presence-chat.a", "private-team.x", "a=b@c,d;e"]),
    },
    optional={"socket_id": st.just("1.2"), "info": st.just("subscription_count")},
)
"""Events that mostly pass, so that publishing is fuzzed as well as parsing."""
bodies = st.one_of(
    good_events,
    events,
    st.fixed_dictionaries({"batch": st.lists(st.one_of(good_events, events), max_size=12)}),
    st.fixed_dictionaries({"batch": st.lists(good_events, min_size=1, max_size=10)}),
    values,
)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("text/plain"), response.headers
        assert response.text.strip(), "a refusal without a reason"
    else:
        assert isinstance(response.json(), dict)


@settings(max_examples=200, **LIVE_HYPOTHESIS)
@given(body=bodies, batch=st.booleans())
def test_signed_bodies_are_answered_200_or_refused_with_a_reason(
    http: httpx.Client, body: Any, batch: bool
) -> None:
    path = f"/apps/{APP_ID}/{'batch_events' if batch else 'events'}"
    content = json.dumps(body).encode()
    params = sign("POST", path, {}, content, key=KEY, secret=SECRET, timestamp=int(time.time()))
    response = http.post(path, params=params, content=content)
    STATUSES["bodies"][response.status_code] += 1
    _check(response)
    assert response.status_code in (200, 400, 413, 503), (body, response.text[:300])


@settings(max_examples=200, **LIVE_HYPOTHESIS)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    tail=st.one_of(
        st.sampled_from(
            [
                "channels",
                "channels/news",
                "channels/presence-chat.a/users",
                "channels/news/users",
                "users/u1/terminate_connections",
                "events",
                "nowhere",
            ]
        ),
        st.text(
            st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=30
        ),
    ),
    query=st.dictionaries(
        st.sampled_from(["info", "filter_by_prefix", "auth_key", "auth_timestamp", "x"]),
        st.text(max_size=20),
        max_size=3,
    ),
    signed=st.booleans(),
)
def test_any_path_and_query_is_answered_without_a_5xx(
    http: httpx.Client, method: str, tail: str, query: dict[str, str], signed: bool
) -> None:
    path = f"/apps/{APP_ID}/{tail}"
    params = dict(query)
    if signed:
        params = sign(method, path, query, b"", key=KEY, secret=SECRET, timestamp=int(time.time()))
    response = http.request(method, path, params=params)
    STATUSES["paths"][response.status_code] += 1
    _check(response)
    if not signed and response.status_code not in (404, 405):
        assert response.status_code == 401, response.text


def test_after_the_fuzz_the_gateway_is_healthy(pusher_gateway: Gateway) -> None:
    assert_serving(pusher_gateway)
