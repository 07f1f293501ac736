"""The origin rule of REALTIME_ALLOWED_ORIGINS: parsing, normalisation, and who may come in."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tidings.domain.errors import InvalidOrigin
from tidings.domain.origins import Origin, OriginPolicy, is_loopback_host, parse_host_header

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(dns_names, ipv4, ipv6)
schemes = st.sampled_from(["http", "https"])
ports = st.integers(1, 65535)


def _shout(text: str, flips: list[bool]) -> str:
    """``text`` with the letters chosen by ``flips`` in upper case."""
    return "".join(c.upper() if i < len(flips) and flips[i] else c for i, c in enumerate(text))


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@st.composite
def origin_texts(draw: st.DrawFn) -> str:
    """An origin as a person or a browser may write it: any case, default port or not."""
    scheme, host = draw(schemes), draw(hosts)
    port = draw(st.one_of(st.none(), ports, st.just(80 if scheme == "http" else 443)))
    text = f"{scheme}://{_bracketed(host)}{'' if port is None else f':{port}'}"
    return _shout(text, draw(st.lists(st.booleans(), max_size=len(text))))


def origin_and_host(scheme: str, host: str, port: int | None) -> tuple[str, str]:
    suffix = "" if port is None else f":{port}"
    return f"{scheme}://{_bracketed(host)}{suffix}", f"{_bracketed(host)}{suffix}"


policies = st.lists(origin_texts(), max_size=4).map(
    lambda texts: OriginPolicy.parse(",".join(texts))
)


# -- Parsing and normalisation -------------------------------------------------------------------


@given(origin_texts())
def test_normalising_an_origin_is_idempotent(text: str) -> None:
    once = str(Origin.parse(text))
    assert str(Origin.parse(once)) == once
    assert Origin.parse(once) == Origin.parse(text)


@given(origin_texts())
def test_a_normalised_origin_is_lower_case_without_its_default_port(text: str) -> None:
    shown = str(Origin.parse(text))
    assert shown == shown.lower()
    assert not shown.startswith("http://") or not shown.endswith(":80")
    assert not shown.startswith("https://") or not shown.endswith(":443")


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("HTTPS://App.Example.COM:443", "https://app.example.com"),
        ("http://localhost:80/", "http://localhost"),
        ("http://LOCALHOST:3000", "http://localhost:3000"),
        ("http://[0:0::1]:6001", "http://[::1]:6001"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("capacitor://localhost", "capacitor://localhost"),
    ],
)
def test_origins_are_written_as_a_browser_sends_them(written: str, normal: str) -> None:
    assert str(Origin.parse(written)) == normal


@given(policies)
def test_a_policy_survives_its_own_text(policy: OriginPolicy) -> None:
    assert OriginPolicy.parse(str(policy)) == policy


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("localhost:3000", "scheme://host"),
        ("app.example.com", "scheme://host"),
        ("https://app.example.com/path", "no path"),
        ("https://app.example.com?x=1", "no path, query"),
        ("https://user:pw@app.example.com", "no user name"),
        ("https://app.example.com:99999", "port"),
        ("https://app.example.com:http", "port"),
        ("https://*.example.com", "wildcards are not supported"),
        ("https://exa mple.com", "scheme://host"),
        ("null", "'null' cannot be listed"),
    ],
)
def test_a_malformed_entry_is_refused_by_name(entry: str, reason: str) -> None:
    with pytest.raises(InvalidOrigin, match="invalid origin") as caught:
        OriginPolicy.parse(f"https://fine.example, {entry}")
    assert repr(entry) in str(caught.value)
    assert reason in str(caught.value)


def test_empty_entries_are_skipped_and_star_is_explicit() -> None:
    assert OriginPolicy.parse(" , ,") == OriginPolicy()
    assert not OriginPolicy.parse("").any_origin
    assert OriginPolicy.parse("*").any_origin


# -- Who may come in -----------------------------------------------------------------------------


@given(policies, st.one_of(st.none(), st.text(max_size=30)))
def test_a_request_without_origin_is_allowed(policy: OriginPolicy, host: str | None) -> None:
    assert policy.allows(None, host)


@given(st.lists(origin_texts(), min_size=1, max_size=4), st.data())
def test_a_listed_origin_is_allowed_whatever_the_host(
    texts: list[str], data: st.DataObject
) -> None:
    policy = OriginPolicy.parse(",".join(texts))
    listed = data.draw(st.sampled_from(texts))
    host = data.draw(st.one_of(st.none(), st.text(max_size=30), hosts))
    assert policy.allows(listed, host)
    assert policy.allows(str(Origin.parse(listed)), host)


@given(st.one_of(st.none(), st.text(max_size=40), origin_texts()), st.one_of(st.none(), st.text()))
def test_star_allows_every_origin(origin: str | None, host: str | None) -> None:
    assert OriginPolicy.parse("*").allows(origin, host)


@given(policies, schemes, hosts, st.one_of(st.none(), ports))
def test_the_gateways_own_origin_is_allowed(
    policy: OriginPolicy, scheme: str, host: str, port: int | None
) -> None:
    origin, host_header = origin_and_host(scheme, host, port)
    assert policy.allows(origin, host_header)
    assert policy.allows(_shout(origin, [True] * len(origin)), host_header.upper())


@given(schemes, hosts, hosts, st.one_of(st.none(), ports), st.one_of(st.none(), ports))
def test_another_origin_is_refused_unless_listed(
    scheme: str, host: str, other: str, port: int | None, other_port: int | None
) -> None:
    origin, _ = origin_and_host(scheme, host, port)
    _, host_header = origin_and_host(scheme, other, other_port)
    default = 80 if scheme == "http" else 443
    assume((host, port or default) != (other, other_port or default))
    assert not OriginPolicy().allows(origin, host_header)
    assert OriginPolicy.parse(origin).allows(origin, host_header)


def test_default_ports_match_a_host_header_without_port() -> None:
    policy = OriginPolicy()
    assert policy.allows("https://app.example", "app.example")
    assert policy.allows("https://app.example", "app.example:443")
    assert policy.allows("http://app.example", "app.example:80")
    assert not policy.allows("http://app.example", "app.example:443")
    assert not policy.allows("https://app.example:8443", "app.example")


@given(policies, st.one_of(st.none(), st.text(max_size=30)))
def test_null_origin_is_refused_unless_star(policy: OriginPolicy, host: str | None) -> None:
    assume(not policy.any_origin)
    assert not policy.allows("null", host)
    assert OriginPolicy.parse("*").allows("null", host)


@given(policies, st.text(max_size=40), st.text(max_size=30))
def test_a_garbled_origin_is_refused(policy: OriginPolicy, garbage: str, host: str) -> None:
    assume(not policy.any_origin)
    try:
        Origin.parse(garbage)
    except InvalidOrigin:
        assert not policy.allows(garbage, host)


# -- DNS rebinding: Host names a loopback gateway accepts ----------------------------------------

loopback_hosts = st.one_of(
    st.sampled_from(["localhost", "LOCALHOST", "[::1]"]),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)).map(
        lambda parts: "127." + ".".join(map(str, parts))
    ),
)
loopback_listeners = st.sampled_from(["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
public_listeners = st.one_of(st.sampled_from(["0.0.0.0", "::", "", "10.1.2.3"]), dns_names)


@given(policies, st.one_of(st.none(), st.text(max_size=30)), public_listeners)
def test_a_gateway_on_a_public_address_takes_any_host(
    policy: OriginPolicy, host: str | None, listener: str
) -> None:
    assume(not is_loopback_host(listener))
    assert policy.host_allowed(host, listener)


@given(policies, loopback_hosts, st.one_of(st.none(), ports), loopback_listeners)
def test_a_loopback_gateway_takes_loopback_hosts_on_any_port(
    policy: OriginPolicy, host: str, port: int | None, listener: str
) -> None:
    assert policy.host_allowed(host if port is None else f"{host}:{port}", listener)


@given(dns_names, st.one_of(st.none(), ports), loopback_listeners)
def test_a_loopback_gateway_refuses_other_names_unless_listed(
    name: str, port: int | None, listener: str
) -> None:
    assume(not is_loopback_host(name))
    host = name if port is None else f"{name}:{port}"
    assert not OriginPolicy().host_allowed(host, listener)
    assert OriginPolicy.parse(f"https://{name}").host_allowed(host, listener)
    assert OriginPolicy.parse("*").host_allowed(host, listener)


def test_a_rebound_page_passes_same_origin_but_not_the_host_check() -> None:
    policy = OriginPolicy()
    origin, host = "http://evil.example:6001", "evil.example:6001"
    assert policy.allows(origin, host)
    assert not policy.host_allowed(host, "127.0.0.1")


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback_host(address) is loopback


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("Example.com:8080", ("example.com", 8080)),
        ("example.com", ("example.com", None)),
        ("[::1]:6001", ("::1", 6001)),
        ("[::1]", ("::1", None)),
        ("127.0.0.1:", ("127.0.0.1", None)),
        ("a b", None),
        ("a.example:99999", None),
        ("a.example/x", None),
        ("user@a.example", None),
        ("", None),
    ],
)
def test_host_headers(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert parse_host_header(value) == parsed
