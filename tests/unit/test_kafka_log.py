"""kafka-python's logging, as the tidings command writes it: one line per change of the broker's
state, and any other warning once a minute at most.

The records fed in are shaped like kafka-python's own (its loggers, messages and exception
arguments); ``test_the_patterns_were_read_in_the_pinned_kafka_python`` keeps them honest.
"""

from __future__ import annotations

import logging

import kafka
import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from packaging.version import Version

from tidings.entrypoints.logs import WRITTEN_FOR, KafkaLog, name_brokers, setup_logging

REFUSED = ConnectionRefusedError(111, "Connection refused")


class Collected(logging.Handler):
    """The records that reached the end of the line."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{record.levelname} {record.getMessage()}" for record in self.records]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(
    name: str, level: int, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def connection_failed() -> logging.LogRecord:
    return record("kafka.net.manager", logging.ERROR, "Connection failed: %s", REFUSED)


def bootstrap_failed() -> logging.LogRecord:
    return record(
        "kafka.net.manager",
        logging.WARNING,
        "Bootstrap connection to %s failed: %s (backoff %.2f secs)",
        "bootstrap-0",
        KafkaConnectionError("Connection refused"),
        0.05,
    )


def no_node() -> logging.LogRecord:
    return record("kafka.cluster", logging.WARNING, "No node available for metadata refresh")


def timed_out() -> logging.LogRecord:
    return record(
        "kafka.net.manager",
        logging.ERROR,
        "Bootstrap failed: %s",
        KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9092']"),
    )


def connected(address: str = "127.0.0.1:9092") -> logging.LogRecord:
    connection = (
        f"<KafkaConnection node_id=1 host=[{address}<-54321] broker_version=4.3 (connected)>"
    )
    return record("kafka.net.connection", logging.INFO, "%s: Connected", connection)


def dns_failed() -> logging.LogRecord:
    """kafka-python formats this one itself: no exception among the arguments."""
    text = "DNS lookup failed for kafka1:9092, gaierror(-2, 'Name or service not known')"
    return record("kafka.net.inet", logging.WARNING, text)


OUTAGE = [connection_failed, bootstrap_failed, no_node, timed_out, dns_failed]


@pytest.fixture
def out() -> Collected:
    return Collected()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler(out: Collected, clock: Clock) -> KafkaLog:
    made = KafkaLog(out, threshold=logging.INFO, repeat_every=60, clock=clock)
    made.brokers = ("127.0.0.1:9092",)
    return made


def feed(handler: KafkaLog, records: list[logging.LogRecord]) -> None:
    for item in records:
        handler.handle(item)


def an_outage(length: int) -> list[logging.LogRecord]:
    return [OUTAGE[n % len(OUTAGE)]() for n in range(length)]


def test_an_outage_is_one_warning_and_its_end_one_info(handler: KafkaLog, out: Collected) -> None:
    feed(handler, [connected(), *an_outage(414), connected(), connected()])
    assert out.lines() == [
        "WARNING Kafka at 127.0.0.1:9092 unreachable: [Errno 111] Connection refused",
        "INFO Kafka at 127.0.0.1:9092 answers again",
    ]
    assert handler.reachable is True


def test_each_outage_is_told(handler: KafkaLog, out: Collected) -> None:
    feed(handler, [connected(), *an_outage(20), connected(), *an_outage(20), connected()])
    assert [line.split()[0] for line in out.lines()] == ["WARNING", "INFO", "WARNING", "INFO"]


def test_before_kafka_answers_once_its_failures_say_nothing(
    handler: KafkaLog, out: Collected
) -> None:
    """A command that cannot reach Kafka at all says so in its own one line."""
    feed(handler, an_outage(50))
    assert out.lines() == []
    assert handler.reachable is None
    feed(handler, [connected()])
    assert out.lines() == []  # answering the first time is no change to tell


def test_the_reason_is_the_first_failure_of_the_outage(handler: KafkaLog, out: Collected) -> None:
    feed(handler, [connected(), timed_out(), connection_failed()])
    assert out.lines() == [  # kafka-python's errors say their class in their str
        "WARNING Kafka at 127.0.0.1:9092 unreachable: "
        "KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:9092']"
    ]


def test_a_record_naming_its_broker_names_it(handler: KafkaLog, out: Collected) -> None:
    handler.brokers = ("k1:9092", "k2:9092")
    lost = record(
        "kafka.net.connection",
        logging.ERROR,
        "%s: Connection lost: %s",
        "<KafkaConnection node_id=2 host=[k2:9092] broker_version=4.3 (connected)>",
        ConnectionResetError(104, "Connection reset by peer"),
    )
    feed(handler, [connected("k1:9092"), lost, connected("k2:9092")])
    assert out.lines() == [
        "WARNING Kafka at k2:9092 unreachable: [Errno 104] Connection reset by peer",
        "INFO Kafka at k2:9092 answers again",
    ]


def test_a_request_that_timed_out_is_told_without_the_connections_repr(
    handler: KafkaLog, out: Collected
) -> None:
    """What a paused broker gives a consumer (seen in tests/adapters/test_kafka_outage.py)."""
    timed_out = record(
        "kafka.net.connection",
        logging.WARNING,
        "%s: Request timed out after %d ms. Closing connection.",
        "<KafkaConnection node_id=1 host=[127.0.0.1:9092<-34634] broker_version=(4, 3) "
        "(connected)>",
        4999,
    )
    feed(handler, [connected(), timed_out, connected()])
    assert out.lines() == [
        "WARNING Kafka at 127.0.0.1:9092 unreachable: "
        "Request timed out after 4999 ms. Closing connection.",
        "INFO Kafka at 127.0.0.1:9092 answers again",
    ]


def test_a_connection_without_its_socket_names_the_configured_brokers(
    handler: KafkaLog, out: Collected
) -> None:
    lost = record(
        "kafka.net.connection",
        logging.ERROR,
        "%s: Connection lost: %s",
        "<KafkaConnection node_id=2 host=[none] broker_version=4.3 (disconnected)>",
        ConnectionResetError(104, "Connection reset by peer"),
    )
    feed(handler, [connected(), lost])
    assert out.lines() == [
        "WARNING Kafka at 127.0.0.1:9092 unreachable: [Errno 104] Connection reset by peer"
    ]


def test_without_a_named_broker_the_configured_ones_are_named(
    handler: KafkaLog, out: Collected
) -> None:
    handler.brokers = ("k1:9092", "k2:9092")
    feed(handler, [connected(), no_node()])
    assert out.lines() == [
        "WARNING Kafka at k1:9092,k2:9092 unreachable: No node available for metadata refresh"
    ]


def test_other_warnings_pass_once_a_minute_per_message(
    handler: KafkaLog, out: Collected, clock: Clock
) -> None:
    def throttled(topic: str) -> logging.LogRecord:
        return record(
            "kafka.producer.sender",
            logging.WARNING,
            "Got error produce response on topic-partition %s, retrying",
            topic,
        )

    other = record("kafka.coordinator", logging.ERROR, "Heartbeat failed: %s", "rebalancing")
    feed(handler, [throttled(f"t{n}") for n in range(100)] + [other, other])
    assert out.lines() == [
        "WARNING Got error produce response on topic-partition t0, retrying",
        "ERROR Heartbeat failed: rebalancing",
    ]
    clock.now += 59
    feed(handler, [throttled("late")])
    assert len(out.lines()) == 2
    clock.now += 1
    feed(handler, [throttled("later"), other])
    assert out.lines()[2:] == [
        "WARNING Got error produce response on topic-partition later, retrying",
        "ERROR Heartbeat failed: rebalancing",
    ]


def test_kafkas_info_chatter_never_passes(handler: KafkaLog, out: Collected) -> None:
    feed(
        handler,
        [
            record("kafka.net.manager", logging.INFO, "Attempting bootstrap to %s", "bootstrap-0"),
            record("kafka.cluster", logging.INFO, "Updated metadata: %s", "ClusterMetadata(...)"),
            connected(),
        ],
    )
    assert out.lines() == []


def test_the_threshold_holds_back_the_info_line(out: Collected, clock: Clock) -> None:
    handler = KafkaLog(out, threshold=logging.WARNING, clock=clock)
    feed(handler, [connected(), *an_outage(5), connected()])
    assert [line.split()[0] for line in out.lines()] == ["WARNING"]
    assert handler.reachable is True  # the end of the outage was seen, just not written


def test_the_patterns_were_read_in_the_installed_kafka_python_or_a_newer_one() -> None:
    """The texts ``KafkaLog`` recognises are kafka-python's, read in ``WRITTEN_FOR`` (the CI
    version); older ones down to the lowest bound run the real outage test in the lowest-versions
    pass. A newer kafka-python fails here: read its texts again, then raise ``WRITTEN_FOR``."""
    assert Version(kafka.__version__) <= Version(WRITTEN_FOR)


@pytest.mark.usefixtures("command_logging")
def test_the_command_setup_catches_every_kafka_logger(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    setup_logging("INFO")  # a second command in one process (click's test runner) adds no copy
    name_brokers(["127.0.0.1:9"])
    logging.getLogger("kafka.net.connection").info("%s: Connected", "<KafkaConnection>")
    for _ in range(30):
        logging.getLogger("kafka.net.manager").error("Connection failed: %s", REFUSED)
        logging.getLogger("kafka.cluster").warning("No node available for metadata refresh")
    written = capsys.readouterr().err.splitlines()
    assert len(written) == 1, written
    assert written[0].endswith(
        "WARNING kafka: Kafka at 127.0.0.1:9 unreachable: [Errno 111] Connection refused"
    )


@pytest.mark.usefixtures("command_logging")
def test_at_debug_kafka_records_pass_as_they_are() -> None:
    """They reach the root logger's handlers (where the command's stream is), each once.

    Collected on the root logger rather than with caplog: pytest also attaches its capture to
    loggers that do not propagate, which the "kafka" logger was while an earlier test's command
    ran, and would see each record twice.
    """
    setup_logging("INFO")
    setup_logging("DEBUG")  # the INFO setup of an earlier command is undone
    root = logging.getLogger()
    out = Collected()
    root.addHandler(out)
    try:
        for _ in range(3):
            logging.getLogger("kafka.net.manager").error("Connection failed: %s", REFUSED)
    finally:
        root.removeHandler(out)
    assert out.lines() == ["ERROR Connection failed: [Errno 111] Connection refused"] * 3
