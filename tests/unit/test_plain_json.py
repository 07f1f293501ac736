"""``plain_json`` decodes with orjson only what orjson reads exactly as ``json`` does (ADR 0040):
anything else is left to the standard library, never silently changed."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import json_values
from tidings.application import plain_json


def typed(value: Any) -> Any:
    """The value with each number's type kept: ``1 == 1.0`` must not hide a changed number."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, bool | int | float):
        return (type(value).__name__, repr(value))
    return value


@given(json_values)
def test_what_it_decodes_is_what_json_decodes(value: Any) -> None:
    text = json.dumps(value).encode()
    try:
        decoded = plain_json.loads(text)
    except plain_json.NotPlain:
        return
    assert typed(decoded) == typed(json.loads(text))
    encoded = plain_json.dumps(decoded)
    assert encoded is not None
    assert typed(json.loads(encoded)) == typed(decoded)


small_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@given(small_json)
def test_plain_json_takes_the_fast_path(value: Any) -> None:
    """Every integer within 64 bits, nanosecond timestamps included, and every text a UTF-8
    body can carry, is decoded by orjson: the fallback is for what it would change."""
    text = json.dumps(value, ensure_ascii=False).encode()
    assert typed(plain_json.loads(text)) == typed(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b"18446744073709551616",
        b"-9223372036854775809",
        b'{"data": [1, 123456789012345678901234567890]}',
        b"9" * 5000,  # past int()'s 4300 digits: refused as not plain, not a ValueError
        b"NaN",
        b"[Infinity]",
        b'"\\ud800"',
        b'"--12345678901234567890-"',  # looked at as a number wherever it is: safe, not slower
        b"{not json",
        b"\xff",
    ],
)
def test_what_orjson_would_change_or_refuse_is_not_plain(text: bytes) -> None:
    with pytest.raises(plain_json.NotPlain):
        plain_json.loads(text)


@pytest.mark.parametrize("number", [1796524650435432400, -(2**63), 2**64 - 1, 0, -1, 10**18])
def test_integers_within_64_bits_are_kept_exactly(number: int) -> None:
    assert plain_json.loads(f'{{"ts": {number}}}'.encode()) == {"ts": number}


def test_what_orjson_cannot_write_is_left_to_json() -> None:
    assert plain_json.dumps(2**70) is None
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    assert plain_json.dumps(deep) is None
    assert plain_json.dumps([1.5, "é", None]) == '[1.5,"é",null]'
    assert math.isclose(json.loads(plain_json.dumps(1e-05) or ""), 1e-05)


@given(
    st.binary(max_size=200)
    | st.text(alphabet='0123456789-.,[]{}:" e', max_size=200).map(str.encode)
)
def test_hostile_bytes_are_plain_json_or_not_plain_never_another_error(text: bytes) -> None:
    """A client's body: any bytes either decode as ``json`` decodes them or raise ``NotPlain``."""
    try:
        decoded = plain_json.loads(text)
    except plain_json.NotPlain:
        return
    assert typed(decoded) == typed(json.loads(text))
