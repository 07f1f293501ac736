"""How the ``tidings`` command logs: one stream on stderr, and kafka-python's chatter reduced to
what an operator can act on.

kafka-python logs every failed connection attempt, bootstrap attempt and metadata refresh on its
own, at WARNING or ERROR: 18 lines for one publish to a broker that is down, 414 in a 50 s outage.
``KafkaLog`` stands between kafka-python's loggers (``kafka.*``) and stderr and says one line per
change of the broker's state instead: a WARNING when Kafka becomes unreachable
(``Kafka at HOST:PORT unreachable: <reason>``) and an INFO when it answers again. Every other
kafka record at WARNING or above passes at most once per ``REPEAT_EVERY`` seconds per message.
At ``--log-level debug`` kafka-python's records pass as they are.

Only a change is a line: before Kafka has answered once, its connection errors say nothing, so a
command that cannot reach it at all prints one line, its own error naming the brokers it tried
(every command fails within ``KAFKA_TIMEOUT``). A process that has reached Kafka is a long-running
one (a gateway, a consumer), and there an outage is news.

Which records are connection errors and which say a connection is made is read from kafka-python's
records: the exceptions among a record's arguments (its connection errors are ``OSError`` or
``kafka.errors`` types), else the texts of ``CONNECTION_TEXTS`` and ``CONNECTED_TEXTS``, which
were read in kafka-python ``WRITTEN_FOR``; a test holds the pinned version to it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

WRITTEN_FOR = "3.0.12"
"""The kafka-python version whose log records ``KafkaLog`` was written against."""

REPEAT_EVERY = 60.0
"""Seconds during which a kafka record at WARNING or above is not repeated (same logger, same
message format)."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTEXT_FIELDS = ("connection", "node", "channel", "code")
"""What a log site may add with ``extra=`` (the gateway's connection lines do), and a JSON line
then carries as fields of its own."""

CONNECTION_ERROR_TYPES = (
    "KafkaConnectionError",
    "NodeNotReadyError",
    "NoBrokersAvailable",
    "KafkaTimeoutError",
    "RequestTimedOutError",
)
"""Names of kafka-python's exception classes that mean "the broker did not answer" (matched on
the exception's class and its bases, so kafka itself need not be imported to classify)."""

CONNECTION_TEXTS = re.compile(
    r"No node available|not ready; waiting|Bootstrap attempt to .* failed|Bootstrap failed"
    r"|Request timed out after|Connection (failed|lost)|Unable to bootstrap|DNS lookup failed"
)
"""kafka-python's connection failures logged without an exception argument."""

CONNECTED_TEXTS = re.compile(r": Connected$|^Bootstrap complete")
"""kafka-python's INFO records for a connection made (``<KafkaConnection ...>: Connected``)."""

_ADDRESS = re.compile(r"host=\[([^\]<]+:\d+)(?:<-\d+)?\]")
"""The broker address a kafka-python connection names in its records, when it has one: its
``str`` holds ``host=[HOST:PORT<-LOCAL_PORT]``, or ``host=[none]`` once the socket is gone."""


_CONNECTION_PREFIX = re.compile(r"^<\w+ [^>]*>: ")
"""How kafka-python's connection records begin: ``<KafkaConnection node_id=1 host=[...] ...>: ``."""


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    return any(kind.__name__ in CONNECTION_ERROR_TYPES for kind in type(error).__mro__)


class StderrHandler(logging.Handler):
    """Writes each record to whatever ``sys.stderr`` is when it is emitted (click's test runner
    swaps it per invocation; a handler holding the old stream would write to a closed one)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (``REALTIME_LOG_FORMAT=json``): ``time`` (UTC,
    ISO 8601, milliseconds), ``level``, ``logger``, ``message``, the ``CONTEXT_FIELDS`` the
    record carries, and ``exception`` (the traceback) when there is one. Non-ASCII is escaped,
    so no character of a message can split the line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in CONTEXT_FIELDS:
            value = fields.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of a ``REALTIME_LOG_FORMAT`` value (``text`` or ``json``)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(FORMAT)
    raise ValueError(f"unknown log format {log_format!r}: text or json")


class KafkaLog(logging.Handler):
    """kafka-python's records in, one line per change of the broker's state out (module doc).

    ``target`` writes what passes; ``threshold`` is the command's log level (this handler sees
    kafka's INFO records, to notice a connection made, but passes only what reaches
    ``threshold``). ``brokers`` names the cluster in the state lines when a record does not name
    its broker; the command sets it once it has read ``KAFKA_BROKERS``.
    """

    def __init__(
        self,
        target: logging.Handler,
        *,
        threshold: int = logging.INFO,
        repeat_every: float = REPEAT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.DEBUG)
        self.target = target
        self.threshold = threshold
        self.brokers: Sequence[str] = ()
        self._repeat_every = repeat_every
        self._clock = clock
        self._reachable: bool | None = None
        """None until Kafka has answered once (nothing has changed yet), then True or False."""
        self._last_seen: dict[tuple[str, str], float] = {}

    @property
    def reachable(self) -> bool | None:
        """Whether Kafka answered last (None: it has not answered yet)."""
        return self._reachable

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for out in self.decide(record):
                if out.levelno >= self.threshold:
                    self.target.handle(out)
        except Exception:
            self.handleError(record)

    def decide(self, record: logging.LogRecord) -> list[logging.LogRecord]:
        """The records to write for ``record``: none, itself, or a line about the state.

        Called under the handler's lock (``logging.Handler.handle``), so records from
        kafka-python's threads change the state one at a time.
        """
        reason = self._connection_error(record)
        if reason is not None:
            if self._reachable:
                self._reachable = False
                where = self._address(record) or self._named_brokers()
                return [self._line(logging.WARNING, f"Kafka at {where} unreachable: {reason}")]
            return []
        if record.levelno < logging.WARNING:
            if self._connected(record):
                was = self._reachable
                self._reachable = True
                if was is False:
                    where = self._address(record) or self._named_brokers()
                    return [self._line(logging.INFO, f"Kafka at {where} answers again")]
            return []
        return [record] if self._first_in_a_while(record) else []

    def _connection_error(self, record: logging.LogRecord) -> str | None:
        """Why ``record`` says the broker did not answer, or None when it says something else."""
        if record.levelno < logging.WARNING:
            return None
        args: Iterable[object] = ()
        if isinstance(record.args, tuple):
            args = record.args
        elif isinstance(record.args, dict):
            args = record.args.values()
        errors = [arg for arg in args if isinstance(arg, BaseException)]
        if record.exc_info and record.exc_info[1] is not None:
            errors.append(record.exc_info[1])
        for error in errors:
            if _is_connection_error(error):
                return str(error) or type(error).__name__
        message = record.getMessage()
        if not errors and CONNECTION_TEXTS.search(message):
            return _CONNECTION_PREFIX.sub("", message)  # the line names the broker already
        return None

    def _connected(self, record: logging.LogRecord) -> bool:
        return bool(CONNECTED_TEXTS.search(record.getMessage()))

    def _address(self, record: logging.LogRecord) -> str | None:
        found = _ADDRESS.search(record.getMessage())
        if found is None:
            return None
        return found.group(1)

    def _named_brokers(self) -> str:
        return ",".join(self.brokers) or "the configured brokers"

    def _first_in_a_while(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last_seen.get(key)
        if last is not None and now - last < self._repeat_every:
            return False
        if len(self._last_seen) >= 1024:  # messages are formats, few; bound it anyway
            self._last_seen.clear()
        self._last_seen[key] = now
        return True

    def _line(self, level: int, message: str) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "kafka",
                "levelno": level,
                "levelname": logging.getLevelName(level),
                "msg": message,
            }
        )


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (a level name); kafka-python's records through ``KafkaLog``
    and httpx's from WARNING up (it logs every request at INFO), unless ``level`` is DEBUG."""
    threshold = int(logging.getLevelName(level.upper()))
    formatter = logging.Formatter(FORMAT)
    logging.basicConfig(level=threshold, stream=sys.stderr, format=FORMAT)
    kafka = logging.getLogger("kafka")
    for handler in list(kafka.handlers):
        if isinstance(handler, KafkaLog):
            kafka.removeHandler(handler)
    httpx = logging.getLogger("httpx")  # the gateway broker: one INFO record per request
    if threshold <= logging.DEBUG:
        kafka.setLevel(logging.NOTSET)
        kafka.propagate = True
        httpx.setLevel(logging.NOTSET)
        return
    httpx.setLevel(max(threshold, logging.WARNING))
    target = StderrHandler()
    target.setFormatter(formatter)
    kafka.addHandler(KafkaLog(target, threshold=threshold))
    kafka.setLevel(logging.INFO)  # a connection made is an INFO record: the end of an outage
    kafka.propagate = False
    # kafka-python's assignors warn at every rebalance of a pattern subscription.
    logging.getLogger("kafka.coordinator.assignors").setLevel(logging.ERROR)


_format = ["text"]
"""The log format in use (set by ``use_log_format``)."""


def use_log_format(log_format: str) -> None:
    """Write stderr's log lines as ``log_format`` says (``text`` or ``json``) from now on: the
    handlers ``setup_logging`` installed, and the one behind ``KafkaLog``, which keeps
    filtering kafka-python's records whatever the format."""
    formatter = formatter_for(log_format)
    _format[0] = log_format
    for handler in logging.getLogger().handlers:
        if isinstance(handler, StderrHandler) or (
            type(handler) is logging.StreamHandler
            and handler.stream in (sys.stderr, sys.__stderr__)
        ):
            handler.setFormatter(formatter)
    for handler in logging.getLogger("kafka").handlers:
        if isinstance(handler, KafkaLog):
            handler.target.setFormatter(formatter)


def as_json_line(message: str, error: BaseException | None = None) -> str | None:
    """``message`` (a command's last word, ``tidings: ...``) as a JSON log line when the logs
    are JSON, so a collector reads every line of stderr alike; None when they are text."""
    if _format[0] != "json":
        return None
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    record = logging.makeLogRecord(
        {"name": "tidings", "levelno": logging.ERROR, "levelname": "ERROR", "msg": message}
    )
    record.exc_info = exc_info
    return JsonFormatter().format(record)


def name_brokers(brokers: Sequence[str]) -> None:
    """Name ``brokers`` in the kafka state lines of the handler ``setup_logging`` installed."""
    for handler in logging.getLogger("kafka").handlers:
        if isinstance(handler, KafkaLog):
            handler.brokers = tuple(brokers)


@contextmanager
def told_by_the_command(name: str, *, below: int = logging.ERROR) -> Iterator[None]:
    """Hold back logger ``name``'s records below ``below`` for the block, unless the command runs
    at ``--log-level debug``: for a command whose own lines tell the same outcome (``tidings
    outbox flush`` says what is still waiting and why, where the relay would warn once per retry;
    ``tidings config --check`` says which broker answered, where ``KafkaLog``, whose state is one
    for the process, would call the cluster unreachable when one of the brokers asked is)."""
    logger = logging.getLogger(name)
    if debugging():
        yield
        return
    level = logger.level
    logger.setLevel(below)
    try:
        yield
    finally:
        logger.setLevel(level)


def debugging() -> bool:
    """Whether the running command was given ``--log-level debug`` (failures then show their
    traceback too)."""
    import click

    context = click.get_current_context(silent=True)
    if context is None:
        return False
    return str(context.find_root().params.get("log_level", "")).upper() == "DEBUG"
