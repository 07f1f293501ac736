"""Webhook requests over HTTP with httpx's async client (it runs on trio as on asyncio)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from ..ports import WebhookFailed


class HttpWebhookTransport:
    """Implements ``WebhookTransport``: ``POST`` to one URL, a 2xx answer means taken.

    ``timeout`` bounds each request (connect, send, each read): a receiver that hangs costs a
    retry, never a stuck queue. Redirects are not followed (the URL is configured, not found).
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            follow_redirects=False,
        )

    async def post(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            response = await self._client.post(self._url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"{type(exc).__name__}: {exc or 'no answer'}") from None
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"the receiver answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
