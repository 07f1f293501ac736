"""``tidings config --check``: every value checked, and Kafka asked, one line per check.

The values are checked where they are loaded (``Settings.load``, which applies the Kafka
adapters' own check of pass-through setting names); this module turns the outcome into lines and
adds what loading cannot know: whether ``REALTIME_SECRET`` is long enough for ``tidings serve``,
and, when ``REALTIME_BROKER=kafka``, which of ``KAFKA_BROKERS`` answer within ``KAFKA_TIMEOUT``.
Each broker is asked on its own (a client bootstrapped from that address alone), all at once;
a host name that does not resolve is told as such, since kafka-python would only time out.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from ..config import InvalidSettings, Settings, worker_count
from ..domain.errors import BrokerUnavailable, ConfigurationError, TidingsError


@attrs.frozen
class Check:
    """One line of the report: whether it passed, what was checked, and what was found."""

    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':4}  {self.what}: {self.detail}"


def loading(load: Callable[[], Settings]) -> tuple[Settings | None, list[Check]]:
    """The settings ``load`` gives, or None and one failed check per bad variable."""
    try:
        settings = load()
    except InvalidSettings as exc:
        return None, [Check(False, *_split(problem)) for problem in exc.problems]
    except ConfigurationError as exc:
        return None, [Check(False, "configuration", str(exc))]
    return settings, []


def _split(problem: str) -> tuple[str, str]:
    variable, sep, rest = problem.partition(": ")
    return (variable, rest) if sep else ("configuration", problem)


def value_checks(settings: Settings) -> list[Check]:
    """What loading established, one line per value a newcomer gets wrong, and the secret."""
    effective = settings.effective()
    brokers = settings.broker_list
    checks = [
        Check(True, "configuration", "every value loads (environment over .env over defaults)"),
        Check(
            True,
            "KAFKA_BROKERS",
            f"{', '.join(brokers)} ({len(brokers)} host:port address(es))",
        ),
        Check(
            True,
            "KAFKA_PRODUCER_SETTINGS",
            f"{effective['KAFKA_PRODUCER_SETTINGS'] or '(none)'} (names kafka-python takes)",
        ),
        Check(
            True,
            "KAFKA_CONSUMER_SETTINGS",
            f"{effective['KAFKA_CONSUMER_SETTINGS'] or '(none)'} (names kafka-python takes)",
        ),
    ]
    checks.append(
        Check(
            True,
            "KAFKA_CONSUMER_ASSIGNOR",
            f"{settings.kafka_consumer_assignor} (how a shared group splits partitions)",
        )
    )
    checks.append(_workers_check(settings))
    problems = settings.problems()
    if problems:
        checks += [Check(False, "REALTIME_SECRET", problem) for problem in problems]
    elif settings.secret() is None:
        checks.append(Check(True, "REALTIME_SECRET", "not set: only anonymous clients connect"))
    else:
        checks.append(Check(True, "REALTIME_SECRET", "long enough to sign tokens"))
    return checks


def kafka_checks(settings: Settings, ask: Callable[[Settings], str]) -> list[Check]:
    """Which brokers answer: ``ask`` is called for each address of ``KAFKA_BROKERS`` alone (in
    settings naming only it) and gives what the broker said; an error is its failure."""
    if settings.realtime_broker != "kafka":
        return [Check(True, "Kafka", f"not asked: REALTIME_BROKER is {settings.realtime_broker}")]
    brokers = settings.broker_list

    def probe(broker: str) -> Check:
        what = f"Kafka at {broker}"
        host, _, port = broker.rpartition(":")
        try:
            socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as exc:  # kafka-python would only time out, having logged the reason
            return Check(False, what, f"{host} does not resolve: {exc.strerror or exc}")
        started = time.monotonic()
        try:
            answer = ask(settings.model_copy(update={"kafka_brokers": broker}))
        except BrokerUnavailable as exc:
            return Check(False, what, f"no answer within {settings.kafka_timeout:g}s: {exc.detail}")
        except TidingsError as exc:
            return Check(False, what, f"no answer: {exc}")
        took = time.monotonic() - started
        return Check(True, what, f"answered in {took:.2f}s ({answer})")

    with ThreadPoolExecutor(max_workers=min(len(brokers), 8)) as pool:
        return list(pool.map(probe, brokers))


def report(checks: Sequence[Check]) -> tuple[list[str], int]:
    """The lines to print and the exit status: 0 when every check passed, 1 otherwise."""
    return [check.line() for check in checks], 0 if all(check.ok for check in checks) else 1


def _workers_check(settings: Settings) -> Check:
    """``REALTIME_WORKERS`` resolved, and refused on the memory broker as ``serve`` refuses it."""
    from .workers import available_cores, broker_refusal

    count = worker_count(settings.realtime_workers, available_cores())
    given = f"REALTIME_WORKERS={settings.realtime_workers}"
    refusal = broker_refusal(given, count, settings.realtime_broker)
    if refusal is not None:
        return Check(False, "REALTIME_WORKERS", refusal)
    return Check(True, "REALTIME_WORKERS", f"{count} gateway process(es) for tidings serve")
