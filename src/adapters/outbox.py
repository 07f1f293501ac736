"""A durable outbox: broadcasts survive a broker outage in a SQLite file (standard library).

With ``REALTIME_OUTBOX=/path/outbox.db`` every broadcast is first written to the outbox, in one
SQLite transaction, and acknowledged to the caller as soon as it is stored: a Kafka outage no
longer fails ``broadcast()``. A relay thread sends stored messages to the broker strictly in the
order they were accepted and deletes each one once the broker acknowledged it. While the broker is
down the relay retries with backoff; when it is back, the backlog drains in order. The Kafka
producer is idempotent, so a retry after a lost acknowledgement does not duplicate a message in
Kafka; through a gateway's HTTP API it may, with the same message id (ADR 0024).

Several processes may share one outbox file (gunicorn's workers, Celery's, all with the same
``REALTIME_OUTBOX``): each stores into it, and one of them at a time relays, the one holding the
relay lock (a POSIX lock on ``<file>.relay``, released by the kernel when its process ends, and not
inherited by a forked child), so a message is never relayed by two processes at once and the file's
order is kept. When the relaying process ends, another one takes the lock within a second.

What it does not cover: a process killed between Kafka's acknowledgement and the delete sends that
message again on restart (at-least-once). The file survives process crashes (WAL journal,
``synchronous=NORMAL``); a power loss can lose the last transactions.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from ..application.acknowledgement import Acknowledgement
from ..domain import Channel, Message
from ..domain.errors import BrokerError, BrokerOverloaded, BrokerUnavailable, TidingsError
from ..ports import Pending, Publisher
from . import forks

log = logging.getLogger("tidings.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    body BLOB NOT NULL,
    accepted REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
)
"""

BATCH = 500
MAX_PENDING = 1_000_000
"""Messages the outbox holds at most; beyond, publishing fails with ``BrokerOverloaded``."""


@attrs.frozen
class OutboxStatus:
    path: str
    pending: int
    oldest_age: float | None
    """Seconds the oldest pending message has waited, or None when the outbox is empty."""
    attempts: int
    last_error: str | None


class SqliteOutbox:
    """The table of accepted, not yet relayed messages. Thread-safe (one connection, a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connect()
        self._relay_lock = open(self.path + ".relay", "a+b")  # noqa: SIM115 (held for life)
        forks.renew_after_fork(self)

    def _connect(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def renew_after_fork(self) -> None:
        """In a forked child: a connection of its own (SQLite's rule: a connection never crosses
        a fork). The relay lock is the parent's and stays so; the child may take it later."""
        forks.keep(self._db)
        self._connect()

    def take_relay_lock(self) -> bool:
        """Whether this process is, or now becomes, the one that relays this outbox."""
        try:
            fcntl.lockf(self._relay_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def release_relay_lock(self) -> None:
        fcntl.lockf(self._relay_lock, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, message: Message) -> int:
        with self._transaction() as db:
            (pending,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            if pending >= MAX_PENDING:
                raise BrokerOverloaded(
                    f"the outbox {self.path} holds {pending} messages, its limit; "
                    f"message {message.id} was not accepted"
                )
            cursor = db.execute(
                "INSERT INTO outbox (channel, body, accepted) VALUES (?, ?, ?)",
                (message.channel.name, message.to_bytes(), time.time()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def oldest(self, limit: int) -> list[tuple[int, Message]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(seq, Message.from_json(body)) for seq, body in rows]

    def remove(self, seqs: list[int]) -> None:
        if seqs:
            with self._transaction() as db:
                db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])

    def failed(self, seq: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error, seq),
            )

    def status(self) -> OutboxStatus:
        with self._lock:
            pending, oldest, attempts = self._db.execute(
                "SELECT COUNT(*), MIN(accepted), COALESCE(MAX(attempts), 0) FROM outbox"
            ).fetchone()
            row = self._db.execute(
                "SELECT last_error FROM outbox WHERE last_error IS NOT NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        age = None if oldest is None else max(0.0, time.time() - oldest)
        return OutboxStatus(self.path, pending, age, attempts, row[0] if row else None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._relay_lock.close()


class OutboxPublisher:
    """A ``Publisher`` that stores first and relays in order (see the module doc).

    Its futures resolve as soon as the message is stored, with no position (the broker has not
    placed it yet); they fail only when the message could not be stored.
    """

    def __init__(
        self,
        outbox: SqliteOutbox,
        broker: Publisher,
        *,
        retry_max: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._broker = broker
        self._retry_max = retry_max
        self._close_timeout = close_timeout
        self._start_relay()
        forks.renew_after_fork(self)

    def _start_relay(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="tidings-outbox", daemon=True)
        self._thread.start()

    def renew_after_fork(self) -> None:
        """In a forked child: a relay thread of its own. It relays only once it holds the relay
        lock, which the parent keeps while it lives (see the module doc)."""
        if not self._stop.is_set():
            self._start_relay()

    @property
    def name(self) -> str:
        return self._broker.name

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        if Channel.of(channel) != message.channel:
            raise ValueError(f"publish on {channel!s} of a message for {message.channel.name!r}")
        try:
            self._outbox.add(message)
        except (sqlite3.Error, BrokerError) as exc:
            return Acknowledgement.failed(
                message,
                exc
                if isinstance(exc, BrokerError)
                else BrokerUnavailable([self._outbox.path], f"the outbox refused it: {exc}"),
            )
        self._idle.clear()
        self._wake.set()
        return Acknowledgement.acknowledged(message, None)

    def status(self) -> OutboxStatus:
        return self._outbox.status()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the outbox is empty (everything relayed), at most ``timeout`` seconds."""
        self._wake.set()
        self._idle.wait(timeout)

    def close(self) -> None:
        """Relay what the broker takes within a short bound, then stop; the rest stays stored."""
        self.flush(timeout=self._close_timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        self._outbox.close()
        self._broker.close()

    def _relay(self) -> None:
        backoff = 0.2
        relaying = False
        try:
            while not self._stop.is_set():
                relaying = relaying or self._outbox.take_relay_lock()
                batch = self._outbox.oldest(BATCH if relaying else 1)
                if not batch or not relaying:
                    # Another process relays (it holds the lock) or nothing waits: look again
                    # when something is published here, or in a second.
                    if not batch:
                        self._idle.set()
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                backoff = self._relay_batch(batch, backoff)
        finally:
            if relaying:
                self._outbox.release_relay_lock()

    def _relay_batch(self, batch: list[tuple[int, Message]], backoff: float) -> float:
        """Send one batch and delete what was acknowledged; the back-off for the next one."""
        sent, error = self._send_in_order(batch)
        self._outbox.remove(sent)
        if error is None:
            return 0.2
        log.warning("outbox: %d message(s) wait for the broker: %s", len(batch) - len(sent), error)
        self._stop.wait(backoff)
        return min(backoff * 2, self._retry_max)

    def _send_in_order(self, batch: list[tuple[int, Message]]) -> tuple[list[int], str | None]:
        """Publish a batch; the sequence numbers acknowledged, and the first error if any.

        Sending stops at the first refusal, so a message is never sent before one accepted
        earlier on the same outbox.
        """
        futures: list[tuple[int, Pending]] = []
        refused = threading.Event()

        def note_refusal(future: Pending) -> None:
            if future.exception() is not None:
                refused.set()

        for seq, message in batch:
            if refused.is_set():
                break  # an earlier one was refused: send nothing after it
            try:
                future = self._broker.publish(message.channel, message)
            except (BrokerError, ValueError) as exc:
                self._outbox.failed(seq, str(exc))
                break
            futures.append((seq, future))
            future.add_done_callback(note_refusal)
        sent: list[int] = []
        error: str | None = None
        for seq, future in futures:
            try:
                future.result()
            except TidingsError as exc:
                # Not only the broker's own errors: a gateway may refuse the API key or the
                # message; the message stays stored, and the error shows in the status.
                error = error or str(exc)
                self._outbox.failed(seq, str(exc))
                continue
            sent.append(seq)
        return sent, error
