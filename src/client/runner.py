"""How the client's trio code serves its caller, under trio or under asyncio.

The client is written once, in trio, on trio-websocket. A trio caller awaits it directly. An
asyncio caller gets the same code run inside its own event loop through trio's public guest mode
(``trio.lowlevel.start_guest_run``): trio's scheduler ticks as callbacks of the asyncio loop, on
the loop's thread, and waits for I/O on a helper thread of trio's own (ADR 0030). There is no
second WebSocket stack and no thread of ours.

Trio allows one run per thread, so every client of one asyncio loop shares one guest run: the
first client starts it, the last one to close ends it and waits for it to finish, so nothing is
left behind. Each call from asyncio becomes a task in the guest's nursery whose result settles an
asyncio future; cancelling the asyncio side cancels the trio task. Results are set from trio
code, which runs on the loop's thread, so the future is touched by one thread only.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import sniffio
import trio

from .errors import ClientClosed

T = TypeVar("T")


class Runner(Protocol):
    """Runs the client's trio code for a caller of one async library."""

    library: str

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` in trio, awaited by the caller's library."""
        ...

    async def host(self, awaitable: Awaitable[T]) -> T:
        """From trio, await something of the caller's library (an async token provider)."""
        ...


def current_library() -> str:
    """``"trio"`` or ``"asyncio"``; anything else is refused with a message that says so."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError(
            "tidings.client needs a running event loop: use it from trio or asyncio code"
        ) from None
    if library not in ("trio", "asyncio"):
        raise RuntimeError(f"tidings.client runs under trio or asyncio, not {library}")
    return library


class TrioRunner:
    """Trio callers: the code runs in the caller's own trio run."""

    library = "trio"

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        check_library(self.library)
        return await fn(*args)

    async def host(self, awaitable: Awaitable[T]) -> T:
        return await awaitable


def check_library(expected: str) -> None:
    """Refuse a call from another async library than the client's own."""
    library = sniffio.current_async_library()
    if library != expected:
        raise RuntimeError(
            f"this client was opened under {expected}; it cannot be used from {library}"
        )


class _CallState:
    """One call from asyncio into trio: its cancel scope once it runs, and whether the asyncio
    side gave up before."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.abandoned = False


class Guest:
    """One trio guest run inside one asyncio loop, shared by that loop's clients."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None

    async def start(self, serve: Callable[..., Awaitable[None]]) -> None:
        """Start ``serve`` (which takes ``task_status``) in the guest's nursery, so that it
        outlives the call that started it."""
        assert self._nursery is not None, "guest not started"
        await self._nursery.start(serve)

    def begin(self) -> None:
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self.loop.call_soon,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=True,
        )

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if not self.ready.done():
                self.ready.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _finished(self, result: Any) -> None:
        """trio's done callback: ``result`` is the run's outcome."""
        if _stopping.get(self.loop) is self:
            del _stopping[self.loop]
        try:
            result.unwrap()
        except BaseException as exc:  # the guest's own code failed: tell whoever waits
            for waiting in (self.ready, self.done):
                if not waiting.done():
                    waiting.set_exception(exc)
        else:
            if not self.done.done():
                self.done.set_result(None)

    def stop(self) -> None:
        """End the guest run (its tasks are cancelled); ``done`` settles when it has ended."""
        if self._token is not None and self._stop is not None:
            stop = self._stop
            try:
                self._token.run_sync_soon(stop.set)
            except trio.RunFinishedError:
                pass

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` as a task of the guest run; cancelling the caller cancels it."""
        assert self._token is not None and self._nursery is not None, "guest not started"
        future: asyncio.Future[T] = self.loop.create_future()
        state = _CallState()
        nursery = self._nursery

        def start() -> None:
            if state.abandoned:
                return
            try:
                nursery.start_soon(self._run, fn, args, future, state)
            except RuntimeError:  # the nursery is closing: the guest is stopping
                if not future.done():
                    future.set_exception(ClientClosed("the client's event loop is closing"))

        try:
            self._token.run_sync_soon(start)
        except trio.RunFinishedError:
            raise ClientClosed("the client's event loop has ended") from None
        try:
            return await future
        except asyncio.CancelledError:
            state.abandoned = True
            if state.scope is not None:
                scope = state.scope
                try:
                    self._token.run_sync_soon(scope.cancel)
                except trio.RunFinishedError:
                    pass
            raise

    @staticmethod
    async def _run(
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        future: asyncio.Future[T],
        state: _CallState,
    ) -> None:
        with trio.CancelScope() as scope:
            state.scope = scope
            if state.abandoned:
                scope.cancel()
            try:
                result = await fn(*args)
            except trio.Cancelled:
                if not future.done():
                    future.set_exception(ClientClosed("the client was closed"))
                raise
            except BaseException as exc:  # handed to the asyncio caller, as raised
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

    async def host(self, awaitable: Awaitable[T]) -> T:
        """From a trio task of the guest, await ``awaitable`` as an asyncio task."""
        task = asyncio.ensure_future(awaitable, loop=self.loop)
        finished = trio.Event()
        token = self._token
        assert token is not None

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(finished.set)
            except trio.RunFinishedError:
                pass

        task.add_done_callback(wake)
        try:
            await finished.wait()
        finally:
            if not task.done():
                task.cancel()
        return task.result()


_guests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = weakref.WeakKeyDictionary()
"""The guest run of each loop that has clients."""
_stopping: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = weakref.WeakKeyDictionary()
"""A guest run whose last client closed and that has not ended yet: a new one must wait."""


async def acquire_guest() -> Guest:
    """The running loop's guest run, started on first use; pair with ``release_guest``."""
    loop = asyncio.get_running_loop()
    while (ending := _stopping.get(loop)) is not None:
        await asyncio.shield(ending.done)  # one trio run per thread: let the last one end
    guest = _guests.get(loop)
    if guest is None:
        guest = Guest(loop)
        _guests[loop] = guest
        try:
            guest.begin()
        except BaseException:
            del _guests[loop]
            raise
    guest.users += 1
    try:
        await asyncio.shield(guest.ready)
    except BaseException:
        await release_guest(guest)
        raise
    return guest


async def release_guest(guest: Guest) -> None:
    """One client less; the last one stops the guest run and waits until it has ended."""
    guest.users -= 1
    if guest.users > 0:
        return
    if _guests.get(guest.loop) is guest:
        del _guests[guest.loop]
    if not guest.done.done():
        _stopping[guest.loop] = guest
    guest.stop()
    await asyncio.shield(guest.done)


class GuestRunner:
    """Asyncio callers: the code runs in the loop's guest run."""

    library = "asyncio"

    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        check_library(self.library)
        return await self.guest.call(fn, *args)

    async def host(self, awaitable: Awaitable[T]) -> T:
        return await self.guest.host(awaitable)
