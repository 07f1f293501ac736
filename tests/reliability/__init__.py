"""Reliability and security tests: fuzzing, hostile clients and a soak, against real gateways.

Every test records what it measured (frames and requests tried, refusals by code, memory and
file descriptors before and after, durations) as JSON lines in ``$TIDINGS_RELIABILITY_LOG`` when
that variable is set; ``docs/reliability.md`` quotes those figures.
"""
