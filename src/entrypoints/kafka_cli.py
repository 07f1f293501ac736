"""``tidings kafka ...``: the seed's consumer and Kafka monitoring."""

from __future__ import annotations

import click


@click.group()
def kafka() -> None:
    """Consume from Kafka and inspect topics and consumer lag."""
