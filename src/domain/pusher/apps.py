"""Pusher apps: the id, key and secret a Pusher client and server library are configured with.

A gateway serves one or several apps (ADR 0036). The key is public (clients connect to
``/app/{key}``), the id names the app in the HTTP API, the secret signs. Every app shares the one
hub: a channel is a channel, whichever app's client holds it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

import attrs

_TOKEN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class InvalidPusherApps(ValueError):
    """Pusher app settings that cannot be used; the message names the app and the field."""


def _token(instance: PusherApp, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise InvalidPusherApps(
            f"Pusher app {attribute.name} {value!r}: 1 to 64 letters, digits, '_', '-' or '.'"
        )


def _secret(instance: PusherApp, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidPusherApps("a Pusher app secret is a non-empty string of at most 256 chars")


@attrs.frozen
class PusherApp:
    id: str = attrs.field(validator=_token)
    key: str = attrs.field(validator=_token)
    secret: str = attrs.field(validator=_secret, repr=False)


@attrs.frozen
class PusherApps:
    """The apps a gateway serves, found by key (WebSocket) or by id (HTTP API)."""

    apps: tuple[PusherApp, ...] = ()
    _by_key: Mapping[str, PusherApp] = attrs.field(init=False, repr=False)
    _by_id: Mapping[str, PusherApp] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_key: dict[str, PusherApp] = {}
        by_id: dict[str, PusherApp] = {}
        for app in self.apps:
            if app.key in by_key:
                raise InvalidPusherApps(f"two Pusher apps have the key {app.key!r}")
            if app.id in by_id:
                raise InvalidPusherApps(f"two Pusher apps have the id {app.id!r}")
            by_key[app.key] = app
            by_id[app.id] = app
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def of(cls, apps: Iterable[PusherApp]) -> PusherApps:
        return cls(tuple(apps))

    def by_key(self, key: str) -> PusherApp | None:
        return self._by_key.get(key)

    def by_id(self, app_id: str) -> PusherApp | None:
        return self._by_id.get(app_id)

    def __bool__(self) -> bool:
        return bool(self.apps)

    def __len__(self) -> int:
        return len(self.apps)


def parse_apps(text: str) -> list[PusherApp]:
    """``PUSHER_APPS``: a JSON list of ``{"id", "key", "secret"}`` objects (ADR 0036).

    Raises ``InvalidPusherApps`` naming the entry and what is wrong with it (never the secret).
    """
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise InvalidPusherApps(f"not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise InvalidPusherApps(
            'a JSON list of apps, like [{"id": "1", "key": "k", "secret": "s"}], '
            f"not a {type(entries).__name__}"
        )
    apps = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidPusherApps(f"app {index}: an object with id, key, secret")
        missing = [name for name in ("id", "key", "secret") if name not in entry]
        if missing:
            raise InvalidPusherApps(f"app {index}: missing {', '.join(missing)}")
        unknown = sorted(set(entry) - {"id", "key", "secret"})
        if unknown:
            raise InvalidPusherApps(f"app {index}: unknown field(s) {', '.join(unknown)}")
        try:
            apps.append(PusherApp(entry["id"], entry["key"], entry["secret"]))
        except InvalidPusherApps as exc:
            raise InvalidPusherApps(f"app {index}: {exc}") from None
    return apps
