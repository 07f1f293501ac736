"""After ``fork()``: what a child inherits from its parent's publishers, made its own.

gunicorn ``--preload``, Celery's prefork pool and ``multiprocessing`` fork processes that may have
published already. A forked child has only the thread that called ``fork()``: the parent's worker,
watchdog and network threads are gone, a lock one of them held stays held for ever, and the
sockets it shares with the parent are the parent's conversations, not the child's. A publisher
that carried on with what it inherited would wait for answers that never come (``broadcast()``
used to hang in such a child).

So every adapter that owns threads, locks or connections registers here, and in the child
``renew()`` gives it fresh ones before any code of the child runs (``os.register_at_fork``).
What it inherited is never used again, and not closed on the child's own threads: closing a
client would touch locks a vanished thread may hold, and its sockets are still the parent's
conversations. Those objects are kept (``_inherited``), so that no finaliser of theirs runs in the
child (kafka-python's producer, which would close itself at exit, is closed at once on a daemon
thread of its own instead). Messages the parent had in flight are the parent's to deliver; in the
child their acknowledgements fail at once, saying so, rather than never settle.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable
from typing import Protocol

from ..application.acknowledgement import Acknowledgement

log = logging.getLogger("tidings.forks")


class Renewable(Protocol):
    def renew_after_fork(self) -> None:
        """In a forked child: fresh threads, locks and connections; nothing inherited used."""


_owners: weakref.WeakKeyDictionary[Renewable, None] = weakref.WeakKeyDictionary()
"""In the order they registered, which is the order they were built: what an adapter uses
(the outbox's table) renews before what uses it (the relay, which starts a thread at once)."""
_inherited: list[object] = []
"""What children inherited and must neither use nor finalise (see the module doc)."""

FORKED = "the process forked before the broker answered; the parent process delivers it"
"""Why an acknowledgement inherited from the parent fails in the child."""


def renew_after_fork(owner: Renewable) -> None:
    """Have ``owner.renew_after_fork()`` called in every child forked from now on."""
    _owners[owner] = None


def keep(*inherited: object) -> None:
    """Keep what a child inherited (a client, a connection) alive and untouched."""
    _inherited.extend(item for item in inherited if item is not None)


def fail_inherited(acks: Iterable[Acknowledgement], error: BaseException) -> None:
    """Fail the acknowledgements a child inherited that are not settled yet."""
    for ack in acks:
        if not ack.done():
            ack.set_exception(error)


def _in_child() -> None:
    for owner in list(_owners):
        try:
            owner.renew_after_fork()
        except Exception:
            # One adapter that cannot renew itself must not stop the others, or the child.
            log.exception("%r could not renew itself after fork()", owner)


os.register_at_fork(after_in_child=_in_child)
