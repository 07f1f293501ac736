"""Which web pages may use the gateway: the rule behind ``REALTIME_ALLOWED_ORIGINS``.

A browser tells the server where a request comes from with the ``Origin`` header
(``scheme://host[:port]``); the server decides whether that page may talk to it. Three kinds of
request pass: those without an ``Origin`` (programs, not pages: they can send anything anyway),
those from the gateway's own origin (the ``Origin`` names the ``Host`` the request was sent to),
and those from an origin on the configured list. ``*`` lets every origin in, and only when it is
written explicitly.

Same-origin alone does not stop DNS rebinding: a page on ``evil.example`` whose name is made to
resolve to 127.0.0.1 sends ``Host: evil.example`` to a gateway on loopback, and its ``Origin``
matches that ``Host``. ``OriginPolicy.host_allowed`` closes that gap for loopback listeners, which
only a local program or a configured proxy can reach by a name of their own.

Pure: the standard library parses, nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

import attrs

from .errors import InvalidOrigin

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
"""Ports a browser leaves out of an origin, so ``https://a.example:443`` is ``https://a.example``."""

ANY = "*"
NULL = "null"
"""The origin of sandboxed frames, ``file://`` pages and some redirects: anyone can send it."""

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")


def _host(raw: str) -> str | None:
    """A host name or address in its canonical lower-case form (IPv6 without brackets), or None."""
    if not raw or raw.startswith("[") or raw.endswith("]"):
        return None
    try:
        return ipaddress.ip_address(raw).compressed
    except ValueError:
        pass
    if not raw.isascii():
        try:
            raw = raw.encode("idna").decode("ascii")  # browsers send the ASCII (punycode) form
        except UnicodeError:
            return None
    host = raw.lower()
    return host if _HOSTNAME.match(host) else None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, an address in 127.0.0.0/8 and ``::1`` (bracketed or not).

    Used for listening addresses (``REALTIME_WS_HOST``) and for ``Host`` names alike.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split(text: str) -> SplitResult | None:
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return None
    try:
        return urlsplit(text)
    except ValueError:
        return None


def _raw_host(netloc: str) -> str:
    """``[::1]:80`` -> ``::1``, ``a.example:80`` -> ``a.example``: the host as written."""
    head, colon, _ = netloc.rpartition(":")
    if colon and (not head.startswith("[") or head.endswith("]")):
        netloc = head  # a port follows (an IPv6 literal's own colons are inside its brackets)
    return netloc[1:-1] if netloc.startswith("[") and netloc.endswith("]") else netloc


def _port(parts: SplitResult) -> int | None:
    """The explicit port of ``parts``; ``ValueError`` for one out of range or not a number."""
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.endswith(":"):
        return None  # "host:" is the default port, as in a URL
    return parts.port


@attrs.frozen
class Origin:
    """A web origin: scheme, host and port, normalised as a browser serialises it.

    ``port`` is the effective port: the scheme's default when none is written (None for a scheme
    without a known default, such as ``capacitor``). ``str(origin)`` leaves a default port out.
    """

    scheme: str
    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> Origin:
        """``HTTPS://App.Example.com:443`` -> ``https://app.example.com``.

        Raises ``InvalidOrigin`` naming ``text`` for anything but ``scheme://host[:port]`` (a
        trailing ``/`` is tolerated): paths, queries, credentials and bad ports are refused.
        """
        parts = _split(text.strip())
        if parts is None or not parts.scheme or not parts.netloc:
            raise InvalidOrigin(text, "an origin is scheme://host[:port], e.g. https://example.com")
        if parts.path not in ("", "/") or "?" in text or "#" in text:
            raise InvalidOrigin(text, "an origin has no path, query or fragment")
        if "@" in parts.netloc:
            raise InvalidOrigin(text, "an origin has no user name or password")
        raw_host = _raw_host(parts.netloc)
        host = _host(raw_host)
        if host is None:
            hint = " (wildcards are not supported: list each origin)" if "*" in raw_host else ""
            raise InvalidOrigin(text, f"{raw_host!r} is not a host name or IP address{hint}")
        try:
            port = _port(parts)
        except ValueError:
            raise InvalidOrigin(text, "the port must be a number from 0 to 65535") from None
        scheme = parts.scheme.lower()
        return cls(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme))

    def __str__(self) -> str:
        shown = self.port is not None and self.port != DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{_bracketed(self.host)}{f':{self.port}' if shown else ''}"


def parse_host_header(value: str) -> tuple[str, int | None] | None:
    """``Example.com:8080`` -> ``("example.com", 8080)``; ``[::1]`` -> ``("::1", None)``.

    None for a value that is not ``host[:port]``: such a request is treated as from elsewhere.
    """
    parts = _split(f"//{value.strip()}")
    if parts is None or not parts.netloc or parts.path or parts.query or "@" in parts.netloc:
        return None
    host = _host(_raw_host(parts.netloc))
    if host is None:
        return None
    try:
        return host, _port(parts)
    except ValueError:
        return None


@attrs.frozen
class OriginPolicy:
    """The origins listed in ``REALTIME_ALLOWED_ORIGINS`` (or ``*``), and the rule over them."""

    origins: frozenset[Origin] = frozenset()
    any_origin: bool = False

    @classmethod
    def parse(cls, text: str) -> OriginPolicy:
        """``https://app.example.com, http://localhost:3000`` or ``*``; empty: same-origin only.

        Raises ``InvalidOrigin`` naming the first entry that is not an origin. ``null`` cannot be
        listed: every sandboxed frame and ``file://`` page sends it, so listing it would let any
        page in; write ``*`` if that is what is meant.
        """
        origins: set[Origin] = set()
        any_origin = False
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            if entry == ANY:
                any_origin = True
            elif entry.lower() == NULL:
                raise InvalidOrigin(
                    entry,
                    "'null' cannot be listed: any sandboxed or file:// page sends it "
                    "(write '*' to allow every origin)",
                )
            else:
                origins.add(Origin.parse(entry))
        return cls(frozenset(origins), any_origin)

    def __str__(self) -> str:
        """The normalised list, sorted: ``OriginPolicy.parse(str(policy)) == policy``."""
        entries = ([ANY] if self.any_origin else []) + sorted(str(o) for o in self.origins)
        return ",".join(entries)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """May a request with this ``Origin`` header, sent to this ``Host`` header, be served?

        Yes without an ``Origin`` (not a page), for any origin under ``*``, for a listed origin,
        and for the gateway's own origin (scheme default port assumed when ``Host`` has none).
        ``null`` and malformed origins pass only under ``*``. This does not check the ``Host``
        itself: combine with ``host_allowed`` against DNS rebinding.
        """
        if origin is None or self.any_origin:
            return True
        if origin.strip() == NULL:
            return False
        try:
            parsed = Origin.parse(origin)
        except InvalidOrigin:
            return False
        if parsed in self.origins:
            return True
        target = parse_host_header(host) if host is not None else None
        if target is None:
            return False
        name, port = target
        return (
            name == parsed.host
            and (port if port is not None else DEFAULT_PORTS.get(parsed.scheme)) == parsed.port
        )

    def host_allowed(self, host: str | None, listening_host: str) -> bool:
        """May a request for ``host`` (its ``Host`` header) reach a gateway on ``listening_host``?

        Always for a gateway listening on a non-loopback address. On loopback, only loopback names
        and addresses (``localhost``, ``127.x``, ``[::1]``, any port) and the hosts of listed
        origins pass, or any host under ``*``: a browser that reaches a loopback gateway under
        another name was pointed there by DNS rebinding. A request without ``Host`` (HTTP/1.0,
        never a browser) passes.
        """
        if self.any_origin or host is None or not is_loopback_host(listening_host):
            return True
        target = parse_host_header(host)
        if target is None:
            return False
        name = target[0]
        return is_loopback_host(name) or any(origin.host == name for origin in self.origins)
