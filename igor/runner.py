"""Running handlers: a sync one on the worker pool, an ``async def`` one as a task on the shared event loop.

Whatever a handler does (returns a value, yields values, raises, is
cancelled, asks the program to exit), every way out closes its stream and
gives back what it held of its client's shares (:class:`~igor.peer.Peer`).
The dispatcher decides whether a call may run; this module runs it.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import AsyncGenerator, Generator
from typing import Any, Callable, Dict

from .api import Handler
from .exceptions import IgorError, StreamCancelled, StreamClosed
from .executor import EventLoop, WorkerPool, current_slots, off_loop
from .lifecycle import exit_code
from .peer import Peer
from .protocol import Call, short
from .registry import ConnectedClient
from .stream import Stream

__all__ = ["HandlerRunner"]

log = logging.getLogger("igor")

# What a handler usually returns: sent as its one value without asking the
# (slow, abc-based) questions a generator or a coroutine needs.
_PLAIN_RESULTS = frozenset({dict, list, str, int, float, bool, tuple})


class HandlerRunner:
    """Runs each call's handler where it belongs, and turns every way it ends into its stream's end."""

    def __init__(self, pool: WorkerPool, loop: EventLoop, scope: Dict[str, Any], server: Any,
                 on_exit: Callable[[int], None]):
        self._pool = pool
        self._loop = loop
        self._scope = scope
        self._server = server
        self._on_exit = on_exit

    def run(self, client: ConnectedClient, peer: Peer, stream: Stream, handler: Handler, call: Call, cost: int) -> None:
        """Start ``handler`` for ``call``, whose slot, thread (if sync) and ``cost`` ``peer`` has counted."""
        if handler.is_async:
            self._run_async(client, peer, stream, handler, call, cost)
        else:
            self._pool.submit(lambda: self._run_call(client, peer, stream, handler, call, cost), peer,
                              lambda: peer.ended(stream, cost, thread=True), peer.running[stream][0])

    def _kwargs(self, client: ConnectedClient, call: Call) -> Dict[str, Any]:
        return {
            "session": client.session,
            "scope": self._scope,
            "client_id": client.id,
            "stream_id": call.stream_id,
            "server": self._server,
            "client": client,
        }

    def _run_call(self, client: ConnectedClient, peer: Peer, stream: Stream, handler: Handler, call: Call,
                  cost: int) -> None:
        handed_on = False
        try:
            if stream.cancelled:
                return  # cancelled while it waited for a worker: its close has gone out already
            if handler.takes_keywords:
                result = handler(stream, call.data, self._kwargs(client, call))
            else:
                result = handler.function(stream, call.data)
            if type(result) in _PLAIN_RESULTS:
                pass  # one value, sent below
            elif inspect.iscoroutine(result) or isinstance(result, AsyncGenerator):
                # A sync function that made one (a decorator without async def): run it on the loop all the same.
                handed_on = True
                self._run_async(client, peer, stream, handler, call, cost, result)
                return
            elif isinstance(result, Generator):
                try:
                    for value in result:
                        stream.send(value)
                finally:
                    result.close()
                result = None
            if result is not None and not stream.closed:
                stream._send_last(result)
                return
            stream.close()
        except BaseException as exc:  # noqa: B036 - every way out must close the stream
            self._handler_ended(stream, call, client, exc)
        finally:
            if handed_on:
                peer.give_thread()  # the slot and the cost go with the task
            else:
                peer.ended(stream, cost, thread=True)

    def _run_async(self, client: ConnectedClient, peer: Peer, stream: Stream, handler: Handler, call: Call, cost: int,
                   made: Any = None) -> None:
        """Run an async handler as a task on the loop; ``made`` is its coroutine or generator if already called."""
        import asyncio

        async def run() -> None:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            task.set_name(f"async handler {peer.running.get(stream, (short(call.action),))[0]}")
            current_slots.set(peer)  # its to_thread calls count against this client's threads

            def cancel() -> None:
                # From the connection's reader thread; the loop may already be closed at shutdown.
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass

            # A cancel (or the client leaving) cancels the task, which the handler sees at its next
            # await. Set before reading `cancelled`, so a cancel arriving meanwhile is seen one way or the other.
            stream._on_cancel = cancel
            try:
                if stream.cancelled:
                    if inspect.iscoroutine(made):
                        made.close()  # it will not run: no "never awaited" warning
                    return
                await self._run_task(client, stream, handler, call, made)
            finally:
                peer.ended(stream, cost, thread=False)

        if not self._loop.run(run()):
            stream.cancel()  # the server is shutting down
            peer.ended(stream, cost, thread=False)
            if inspect.iscoroutine(made):
                made.close()

    async def _run_task(self, client: ConnectedClient, stream: Stream, handler: Handler, call: Call, made: Any) -> None:
        import asyncio

        try:
            result = handler(stream, call.data, self._kwargs(client, call)) if made is None else made
            if isinstance(result, AsyncGenerator):
                try:
                    async for value in result:
                        await stream.asend(value)
                finally:
                    await result.aclose()
            else:
                value = await result
                if value is not None and not stream.closed:
                    await stream._asend_last(value)
                    return
            await stream.aclose()
        except asyncio.CancelledError:
            # A stream's cancel sends its own close; anything else that cancelled the task did not.
            if not stream.cancelled:
                await stream.aclose()
        except GeneratorExit:
            raise  # the loop is gone (a handler that ignored its cancel at shutdown): nothing to await
        except BaseException as exc:  # noqa: B036 - every way out must close the stream
            # Sending the error may wait for a slow client: never on the loop's thread.
            await off_loop(self._handler_ended, stream, call, client, exc)

    def _handler_ended(self, stream: Stream, call: Call, client: ConnectedClient, exc: BaseException) -> None:
        if isinstance(exc, StreamCancelled):
            log.debug("stream %r of client %r ended by cancel", call.stream_id, client.id)
        elif isinstance(exc, SystemExit):
            stream.close()
            log.info("action %r asked the program to exit", call.action)
            self._on_exit(exit_code(exc.code))
        elif isinstance(exc, StreamClosed) and stream.closed:
            log.error("action %r sent on its stream after closing it", call.action)
        elif isinstance(exc, IgorError) and exc.code == 429:
            # A bound the handler ran into (its to_thread past the client's threads, say): the client's doing.
            log.warning("action %r for client %r: %s", call.action, client.id, exc)
            if not stream.closed:
                try:
                    stream.send_error(exc)
                except StreamClosed:
                    pass
        elif isinstance(exc, Exception):
            log.error("action %r failed for client %r", call.action, client.id, exc_info=exc)
            if not stream.closed:
                try:
                    stream.send_error(exc, traceback="".join(traceback.format_exception(
                        type(exc), exc, exc.__traceback__)))
                except StreamClosed:
                    pass
        else:
            # Not an error a handler means to report (GeneratorExit, a
            # KeyboardInterrupt): keep the promise that every stream closes.
            log.error("action %r ended abnormally for client %r", call.action, client.id, exc_info=exc)
            stream.close()
