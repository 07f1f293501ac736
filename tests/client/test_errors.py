"""Error frames become error types (``tidings.client.errors``)."""

from __future__ import annotations

import tidings
import tidings.client as client
from tidings.domain.protocol import CloseCode, ErrorCode


def test_every_protocol_error_code_has_a_class_of_its_own() -> None:
    kinds = {code: type(client.error_for(code, "m")) for code in [*ErrorCode, 503]}
    assert client.ClientError not in kinds.values()
    assert len(set(kinds.values())) == len(kinds)
    assert kinds[ErrorCode.GONE] is client.Gap and kinds[ErrorCode.FORBIDDEN] is client.Forbidden


def test_an_error_keeps_its_code_channel_and_words() -> None:
    error = client.error_for(403, "channel 'user.2' belongs to user '2'", "user.2")
    assert isinstance(error, client.Forbidden) and isinstance(error, tidings.TidingsError)
    assert (error.code, error.channel) == (403, "user.2")
    assert str(error) == "channel 'user.2' belongs to user '2' on user.2 (403)"
    refused = client.error_for(CloseCode.UNAUTHORIZED, "token refused")
    assert isinstance(refused, client.TokenRefused) and refused.channel is None
    unknown = client.error_for(499, "newer than this client")
    assert type(unknown) is client.ClientError and unknown.code == 499
