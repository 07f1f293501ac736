"""One table of disconnects: the gateway's close codes, docs/protocol.md and client.js agree."""

from __future__ import annotations

import re
from pathlib import Path

from tidings.domain.disconnects import ADVICE_TEXT, DISCONNECTS, Advice, close_reason
from tidings.domain.protocol import CloseCode

ROOT = Path(__file__).resolve().parents[2]
CLIENT_JS = (ROOT / "src" / "adapters" / "web" / "static" / "client.js").read_text()
PROTOCOL_MD = (ROOT / "docs" / "protocol.md").read_text()


def _js_object(name: str) -> dict[str, str]:
    """The entries of ``export const NAME = Object.freeze({...})`` in client.js."""
    match = re.search(rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);", CLIENT_JS, re.S)
    assert match, f"client.js has no {name} table"
    entries = re.findall(r"^\s*([\w]+):\s*([^,\n]+),?\s*$", match.group(1), re.M)
    return {key: value.strip().strip('"') for key, value in entries}


def test_every_close_code_has_one_row_and_every_row_a_code() -> None:
    assert set(DISCONNECTS) == {int(code) for code in CloseCode}
    assert all(row.code == code for code, row in DISCONNECTS.items())


def test_client_js_knows_every_code_by_the_same_name() -> None:
    assert _js_object("CloseCode") == {code.name: str(int(code)) for code in CloseCode}


def test_client_js_follows_the_tables_advice() -> None:
    assert _js_object("Disconnects") == {
        str(code): row.advice.value for code, row in DISCONNECTS.items()
    }
    for advice in Advice:  # every kind of advice is acted on by name in #onClose
        if advice is not Advice.RESUME:
            assert f'advice === "{advice.value}"' in CLIENT_JS, advice


def test_the_protocol_page_lists_the_table() -> None:
    section = PROTOCOL_MD.split("## Close codes", 1)[1]
    rows = [line for line in section.splitlines() if re.match(r"\| \d{4} \|", line)]
    assert rows == [
        f"| {code} | {row.reason} | {row.meaning} | {ADVICE_TEXT[row.advice]} |"
        for code, row in DISCONNECTS.items()
    ]


def test_a_close_reason_starts_with_the_tables_reason_and_fits_a_close_frame() -> None:
    for code, row in DISCONNECTS.items():
        assert close_reason(code) == row.reason
        assert close_reason(code, "detail").startswith(f"{row.reason}: ")
        assert len(close_reason(code).encode()) <= 123
