"""Who may open a WebSocket or an event stream (``/sse``): the rules of REALTIME_ALLOWED_ORIGINS.

A browser sends an ``Origin`` with every upgrade and lets any page open a WebSocket to any
address, the user's own machine and intranet included; the server is the only one that can say
no. An upgrade without an ``Origin`` is not a page's (browsers always send one) and is admitted. A
page's upgrade is admitted when its origin is the gateway's own or a listed one and, on a
loopback gateway, when the ``Host`` is a loopback name or a listed origin's host, which DNS
rebinding cannot fake. A refusal is HTTP 403 before the upgrade,
with a JSON error that says what to list.
"""

from __future__ import annotations

from ...domain.origins import OriginPolicy
from ...ports import HttpRequest, HttpResponse
from .http_api import json_response


class UpgradeAdmission:
    """Decides whether an upgrade request may become a WebSocket (see the module doc)."""

    def __init__(self, origins: OriginPolicy, listening_host: str) -> None:
        self._origins = origins
        self._listening_host = listening_host

    def __call__(self, request: HttpRequest) -> HttpResponse | None:
        """None to admit the request; otherwise the refusal to send."""
        host = request.headers.get("host")
        origin = request.headers.get("origin")
        if origin is None:
            return None  # not a page: browsers send an Origin with every upgrade
        if not self._origins.host_allowed(host, self._listening_host):
            return json_response(
                403,
                {
                    "error": f"Host {host!r} is not a name of this gateway on "
                    f"{self._listening_host}: refused against DNS rebinding (list the page's "
                    "origin in REALTIME_ALLOWED_ORIGINS)"
                },
            )
        if not self._origins.allows(origin, host):
            what = "a WebSocket" if request.path == "/ws" else "an event stream"
            return json_response(
                403,
                {
                    "error": f"origin {origin!r} may not open {what} here: list it in "
                    "REALTIME_ALLOWED_ORIGINS"
                },
            )
        return None
