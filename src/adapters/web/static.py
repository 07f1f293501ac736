"""The files the gateway serves as they are: the demo page and the browser client."""

from __future__ import annotations

from functools import cache
from importlib import resources

_FILES = {
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
}


@cache
def bundled_file(path: str) -> tuple[bytes, str] | None:
    """The body and content type of a bundled file, or None when there is no such file."""
    entry = _FILES.get(path)
    if entry is None:
        return None
    name, content_type = entry
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return body, content_type
