"""``REALTIME_TRUSTED_PROXIES`` and ``X-Forwarded-For``: whose address a connection is.

The laws: with no trusted proxy, or from an address that is not one, the header is never read;
the answer is always the peer or an address of the header, never anything else; a client's
address comes out whatever it wrote before it, when trusted proxies carried it; and every
address right of the answer (and the peer) is a trusted proxy.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.domain.errors import InvalidProxy
from tidings.domain.proxies import TrustedProxies, parse_address

PROXIES = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1, fd00::/8")

addresses = st.ip_addresses().map(str)
proxies = st.one_of(
    st.ip_addresses(network="10.0.0.0/8"), st.just(ipaddress.ip_address("127.0.0.1"))
).map(str)
outsiders = addresses.filter(lambda address: not PROXIES.trusts(address))
junk = st.text(max_size=20)
entries = st.lists(st.one_of(addresses, junk), max_size=8)
"""What a client may write in its own header: addresses, names, anything."""


@given(addresses, entries)
def test_without_trusted_proxies_the_header_is_never_read(peer: str, header: list[str]) -> None:
    assert TrustedProxies().client_address(peer, header) == peer


@given(outsiders, entries)
def test_a_peer_that_is_no_trusted_proxy_is_its_own_address(peer: str, header: list[str]) -> None:
    assert PROXIES.client_address(peer, header) == peer


@given(addresses, entries)
def test_the_answer_is_the_peer_or_an_address_of_the_header(peer: str, header: list[str]) -> None:
    answer = PROXIES.client_address(peer, header)
    written = {str(parse_address(entry)) for entry in header if parse_address(entry)}
    assert answer == peer or answer in written or answer == str(parse_address(peer))


@given(entries, outsiders, st.lists(proxies, min_size=1, max_size=4))
def test_a_client_carried_by_trusted_proxies_is_found_whatever_it_wrote(
    spoofed: list[str], client: str, chain: list[str]
) -> None:
    """The client connects to chain[0], which connects to chain[1]...; each appends the
    address that connected to it; the last one connects to the gateway."""
    header = [*spoofed, client, *chain[:-1]]
    assert PROXIES.client_address(chain[-1], header) == str(parse_address(client))


@given(addresses, entries)
def test_everything_right_of_the_answer_is_a_trusted_proxy(peer: str, header: list[str]) -> None:
    answer = PROXIES.client_address(peer, header)
    if answer == peer:
        return
    hops = [peer, *reversed(header)]
    index = next(i for i, hop in enumerate(hops) if str(parse_address(hop)) == answer)
    assert all(PROXIES.trusts(hop) for hop in hops[:index])


def test_a_trusted_proxy_that_passed_on_no_address_is_the_client() -> None:
    assert PROXIES.client_address("10.0.0.1", []) == "10.0.0.1"
    assert PROXIES.client_address("10.0.0.1", ["203.0.113.9", "unknown"]) == "10.0.0.1"
    assert PROXIES.client_address("10.0.0.1", ["203.0.113.9:4711"]) == "10.0.0.1"


def test_addresses_as_sockets_and_proxies_write_them() -> None:
    assert PROXIES.client_address("::ffff:127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    assert PROXIES.client_address("127.0.0.1", [" [2001:db8::1] "]) == "2001:db8::1"
    assert PROXIES.client_address("fd00::5", ["198.51.100.7", "10.1.2.3"]) == "198.51.100.7"
    assert not PROXIES.trusts("fe80::1%eth0") and not PROXIES.trusts("localhost")


def test_the_setting_reads_addresses_and_networks() -> None:
    parsed = TrustedProxies.parse(" 127.0.0.1 ,10.0.0.0/8,, ::1 ")
    assert str(parsed) == "127.0.0.1/32,10.0.0.0/8,::1/128"
    assert not TrustedProxies.parse("") and parsed


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("*", "list the proxies"),
        ("10.0.0.1/8", "host bits set: the network is 10.0.0.0/8"),
        ("nginx.internal", "an IP address (10.0.0.5) or network (10.0.0.0/8) is expected"),
        ("10.0.0.0/33", "is expected"),
        ("fe80::1%eth0", "zone id"),
    ],
)
def test_a_bad_entry_is_refused_by_name(entry: str, said: str) -> None:
    with pytest.raises(InvalidProxy) as caught:
        TrustedProxies.parse(f"127.0.0.1, {entry}")
    assert repr(entry) in str(caught.value) and said in str(caught.value)
