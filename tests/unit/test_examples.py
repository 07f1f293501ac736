"""The seed's examples run on the memory broker and every channel gets its messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_run_and_print_what_each_channel_received() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_all.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for expected in (
        "user.42  (2 messages)",
        "public.announcements  (1 message)",
        "presence-chat.1  (2 messages)",
        "admin.orders  (1 message)",
        "dashboard.metrics  (3 messages)",
        'notification {"title": "New Message"',
        'order.status_changed {"order_id": 1001, "status": "shipped"}',
    ):
        assert expected in result.stdout
