"""docs/other-languages.md is what publishers in other languages follow: its topic examples, its
escape table, its channel-name regex and its envelope table are held here to the real functions,
so the page cannot drift from the code."""

from __future__ import annotations

import json
import re
import string
import zlib
from pathlib import Path

import pytest

from tidings.domain import Channel, Message, PerChannelTopics, SharedTopics
from tidings.domain.channel import is_valid_name
from tidings.domain.errors import InvalidMessage
from tidings.domain.topics import encode_channel

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "other-languages.md").read_text()

PER_CHANNEL = PerChannelTopics("realtime")
SHARED = SharedTopics("realtime", 4)


def _table(header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row is ``header``, cells stripped."""
    lines = PAGE.splitlines()
    assert lines.count(header) == 1, f"docs/other-languages.md has no single table {header!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(header) + 2 :]:  # the header, then its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"the table {header!r} has no rows"
    return rows


def _code(cell: str) -> str:
    """The text of a cell that is one code span: `user.1` -> user.1."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one code span, got {cell!r}"
    return match.group(1)


EXAMPLES = _table("| channel | per-channel topic | CRC-32 | shared topic (4 topics) |")
ESCAPES = _table("| in the channel | in the topic |")
ENVELOPE = _table("| field | required | type and rules |")


@pytest.mark.parametrize("row", EXAMPLES, ids=[_code(row[0]) for row in EXAMPLES])
def test_each_example_is_what_the_topic_functions_give(row: list[str]) -> None:
    name, per_channel, crc, shared = row
    channel = Channel(_code(name))
    assert PER_CHANNEL.topic_for(channel) == _code(per_channel)
    assert zlib.crc32(channel.name.encode()) == int(crc)
    assert SHARED.topic_for(channel) == _code(shared)
    assert _code(shared) == f"realtime-shared-{int(crc) % 4}"  # the rule the page states


def test_the_examples_use_every_escape_and_the_seed_example() -> None:
    names = {_code(row[0]) for row in EXAMPLES}
    assert "user.1" in names
    used = set("".join(names))
    assert set(".-_=@,;:") <= used, set(".-_=@,;:") - used


def test_the_escape_table_is_the_encoding_of_every_channel_character() -> None:
    letters_and_digits = string.ascii_letters + string.digits
    assert encode_channel(letters_and_digits) == letters_and_digits
    singles: dict[str, str] = {}
    for left, right in ESCAPES:
        if "\N{EN DASH}" in left:  # the row of ranges: letters and digits stand for themselves
            assert right == "itself", right
            continue
        singles[_code(left)] = _code(right)
    for char, text in singles.items():
        assert encode_channel(char) == text, char
    # Every character a channel may hold besides letters and digits has its row, and no other.
    allowed = {c for c in string.punctuation if is_valid_name(f"a{c}b")}
    assert set(singles) == allowed


def test_the_name_regex_of_the_page_accepts_what_tidings_accepts() -> None:
    match = re.search(r"^    (\^\[.*\$)$", PAGE, re.M)
    assert match, "the page shows no channel-name regex"
    regex = re.compile(match.group(1))
    names = [_code(row[0]) for row in EXAMPLES] + [
        "a",
        "A.b-c_d",
        "user.john.doe",
        ".user",
        "user.",
        "user..1",
        "user 1",
        "user/1",
        "user.1*",
        "é",
    ]
    for name in names:
        assert (regex.fullmatch(name) is not None) == is_valid_name(name), name


ENVELOPE_EXAMPLE = re.search(r"for comparison:\n\n```json\n(.*?)\n```", PAGE, re.S)


def test_the_envelope_example_is_what_tidings_writes() -> None:
    assert ENVELOPE_EXAMPLE, "the page shows no envelope example"
    text = ENVELOPE_EXAMPLE.group(1)
    assert Message.from_json(text).to_json() == text


@pytest.mark.parametrize("row", ENVELOPE, ids=[_code(row[0]) for row in ENVELOPE])
def test_the_envelope_table_says_which_fields_are_required(row: list[str]) -> None:
    assert ENVELOPE_EXAMPLE
    field, required = _code(row[0]), row[1]
    envelope = json.loads(ENVELOPE_EXAMPLE.group(1))
    envelope.pop(field, None)
    if required == "yes":
        with pytest.raises(InvalidMessage, match=field):
            Message.from_dict(envelope)
    else:
        assert required == "no", required
        Message.from_dict(envelope)


def test_the_envelope_table_lists_every_field_tidings_writes() -> None:
    written = Message.event("user.42", "e", exclude="c1").to_dict().keys()
    listed = {_code(row[0]) for row in ENVELOPE}
    assert set(written) | {"user_id"} == listed
