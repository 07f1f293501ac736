"""Summaries of py-spy's collapsed stacks (``py-spy record -f raw``): where the time went.

    python -m bench.profiles FILE [--top N] [--match TEXT]

Prints the functions with the most samples on top of the stack (self) and anywhere in it
(inclusive), as shares of all samples; idle samples are left out when py-spy ran without
``--idle``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any


def _frame_name(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name


def summarize(path: Path, top: int = 15, match: str | None = None) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        if match and not any(match in frame for frame in frames):
            continue
        total += count
        if frames and frames[0].startswith(("thread ", "process ")):
            threads[frames[0]] += count
            frames = [frame for frame in frames if not frame.startswith(("thread ", "process "))]
        names = [_frame_name(frame) for frame in frames]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(top)] if total else []

    return {"samples": total, "self": shares(self_time), "inclusive": shares(inclusive),
            "threads": shares(threads)}


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples"]
    for title in ("threads", "self", "inclusive"):
        if summary[title]:
            lines.append(f"-- {title}")
            lines += [f"{share * 100:6.1f}%  {name}" for name, share in summary[title]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--match", help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    print(render(summarize(args.file, args.top, args.match)))


if __name__ == "__main__":
    main()
