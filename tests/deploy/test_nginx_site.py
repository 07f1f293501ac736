"""The shipped nginx site (``deploy/nginx/tidings.conf``) passes ``nginx -t`` and says what
docs/deploy.md says it does; ``test_behind_nginx`` runs it in front of real gateways."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.nginx import SITE, Nginx
from tidings.config import Settings


def test_the_shipped_site_passes_nginx_t(tmp_path: Path) -> None:
    nginx = Nginx(tmp_path, gateways=[6001, 6002, 6003])
    result = nginx.test()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_catches_a_broken_site(tmp_path: Path) -> None:
    """The check above can fail: a directive without its semicolon is refused, with its file."""
    broken = SITE.read_text().replace("proxy_read_timeout 300s;", "proxy_read_timeout 300s", 1)
    result = Nginx(tmp_path, gateways=[6001], site_text=broken).test()
    assert result.returncode != 0
    assert "tidings.conf" in result.stderr


def _seconds(directive: str, text: str) -> list[int]:
    return [int(value) for value in re.findall(rf"^\s*{directive} (\d+)s;", text, re.MULTILINE)]


def test_the_site_waits_longer_than_the_gateway_before_calling_a_connection_dead() -> None:
    text = SITE.read_text()
    idle = Settings.model_fields["realtime_idle_timeout"].default
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        found = _seconds(directive, text)
        # /ws, /app/ (the Pusher protocol) and /sse: the connections that live for hours.
        assert len(found) == 3 and all(value > idle for value in found), (directive, found)


def test_the_site_upgrades_websockets_streams_events_and_keeps_metrics_inside() -> None:
    text = SITE.read_text()
    assert "proxy_http_version 1.1;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    sse = text.split("location = /sse {", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in sse
    metrics = text.split("location = /metrics {", 1)[1].split("}", 1)[0]
    assert metrics.strip().splitlines()[-2].strip() == "deny all;"
    # A location with a proxy_set_header of its own would drop every one set for the server.
    locations = re.findall(r"^\s*location [^{]*\{([^}]*)\}", text, re.MULTILINE)
    assert len(locations) == 8
    assert not any("proxy_set_header" in block for block in locations)
