"""Whose address a connection is: the rule behind ``REALTIME_TRUSTED_PROXIES``.

Behind a reverse proxy every connection comes from the proxy's address, so a limit per client
address (``REALTIME_MAX_CONNECTIONS_PER_IP``) would count every user as one. The proxy names the
client in ``X-Forwarded-For``: each proxy on the way appends the address that connected to it,
so the header reads ``client, proxy1, proxy2`` and the connection itself comes from the last
proxy. Anyone can write that header, so it is believed only as far as trusted proxies wrote it:
starting from the connection's own address, walk the header from its right end while the
address at hand is a trusted proxy; the first address that is not one is the client. What a
client wrote itself lies left of that and is never read. A connection from an address that is
not a trusted proxy is that address, whatever its header says; with no trusted proxies (the
default) the header is never read at all.

A trusted proxy that passed on something other than an address (or nothing) leaves the walk at
that proxy: it, not a name a client may have chosen, is then the address counted.

Pure: the standard library parses, nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import attrs

from .errors import InvalidProxy

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An IP address as written in ``X-Forwarded-For`` or by the socket layer, or None.

    IPv6 may be bracketed (``[::1]``); an IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, how a
    dual-stack socket reports an IPv4 peer) is the IPv4 address it maps. Ports, names and zone
    ids are not addresses.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


@attrs.frozen
class TrustedProxies:
    """The addresses and networks whose ``X-Forwarded-For`` is believed (none by default)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """``127.0.0.1, 10.0.0.0/8, fd00::/8``: addresses and networks, comma-separated; empty:
        none. Raises ``InvalidProxy`` naming the first entry that is neither, a network written
        with host bits (``10.0.0.1/8``: a typo for which network?) and ``*`` (trusting every
        address lets every client choose the address it is counted under)."""
        networks: list[Network] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            if entry == "*":
                raise InvalidProxy(
                    entry, "trusting every address lets any client choose its own: list the proxies"
                )
            if "%" in entry:
                raise InvalidProxy(entry, "an address with a zone id (%eth0) cannot be trusted")
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise InvalidProxy(
                    entry, "an IP address (10.0.0.5) or network (10.0.0.0/8) is expected"
                ) from None
            if ipaddress.ip_interface(entry).ip != network.network_address:
                raise InvalidProxy(entry, f"host bits set: the network is {network}")
            networks.append(network)
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __str__(self) -> str:
        return ",".join(network.with_prefixlen for network in self.networks)

    def trusts(self, address: str | Address | None) -> bool:
        """Is ``address`` one of the trusted proxies? (Never for something not an address.)"""
        parsed = parse_address(address) if isinstance(address, str) else address
        if parsed is None:
            return False
        return any(parsed.version == net.version and parsed in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The address a connection from ``peer`` counts as, given its ``X-Forwarded-For``
        entries in order (every header line's, split at commas): see the module doc.

        ``peer`` itself when it is not a trusted proxy; else the rightmost entry that is not a
        trusted proxy, walking left only through trusted ones; the last trusted address reached
        when an entry is not an address or the entries run out.
        """
        current = parse_address(peer)
        if current is None or not self.trusts(current):
            return peer
        for entry in reversed(forwarded_for):
            if not self.trusts(current):
                break
            hop = parse_address(entry)
            if hop is None:
                break
            current = hop
        return str(current)
