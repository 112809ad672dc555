"""What the server sends a Python client unasked: pushes to its listeners, calls to its exposed functions.

:class:`Listeners` hands process pushes, failures and ends to the
``client.on(...)`` registrations. ``server.call_client(client_id, name,
data)`` reaches :class:`Exposed`, which runs the function on a small pool of
worker threads (never on the client's reader, so a slow one holds up no
stream or push) and writes its answer back. Both outlive a reconnection;
the server's calls in flight do not.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Union

from .binary import Binary, dumps
from .client_support import Listener, Observer, safely
from .exceptions import ConnectionClosed, IgorError, RemoteError
from .protocol import client_reply_error_message, client_reply_message

__all__ = ["Listeners", "Exposed", "EXPOSED_WORKERS"]

log = logging.getLogger("igor.client")

Message = Dict[str, Any]

# Exposed functions run on at most this many threads: a slow one holds up only
# its own thread, never the reader, and a server cannot make the client spawn
# a thread per call.
EXPOSED_WORKERS = 8


class Listeners:
    """One client's ``on()`` registrations, by push action or process id (None: every process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: Dict[Optional[str], List[Observer]] = {}

    def add(self, name: Optional[str], listener: Optional[Listener], error: Optional[Callable[[RemoteError], None]],
            complete: Optional[Callable[[], None]]) -> Callable[[], None]:
        """See :meth:`IgorClient.on <igor.client.IgorClient.on>`."""
        if listener is None and error is None and complete is None:
            raise TypeError("on() needs a listener, error= or complete=")
        observer = Observer(listener, error, complete)
        with self._lock:
            self._by_name.setdefault(name, []).append(observer)

        def remove() -> None:
            with self._lock:
                observers = self._by_name.get(name, [])
                if observer in observers:
                    observers.remove(observer)

        return remove

    def push(self, message: Message, process_id: Any) -> None:
        """A process's push: its data to the listeners of its action and process, the message to those of all."""
        names = [message["action"]] + ([process_id] if isinstance(process_id, str) else [])
        for observer in self._observers(*names):
            if observer.next is not None:
                safely(observer.next, message.get("data"))
        for observer in self._observers(None):
            if observer.next is not None:
                safely(observer.next, message)

    def failed(self, process_id: str, error: RemoteError) -> None:
        for observer in self._observers(process_id, None):
            if observer.error is not None:
                safely(observer.error, error)

    def completed(self, process_id: str) -> None:
        for observer in self._observers(process_id, None):
            if observer.complete is not None:
                safely(observer.complete)

    def _observers(self, *names: Optional[str]) -> List[Observer]:
        with self._lock:
            # dict.fromkeys: a push whose action is its process id counts once
            return [o for name in dict.fromkeys(names) for o in self._by_name.get(name, ())]


class Exposed:
    """One client's exposed functions; ``encode`` and ``write`` are the client's own."""

    def __init__(self, encode: Callable[[Message], Union[str, Binary]],
                 write: Callable[[Union[str, Binary]], None]):
        self._encode = encode
        self._write = write
        self._lock = threading.Lock()
        self._functions: Dict[str, Callable[[Any], Any]] = {}
        # The callIds the server still waits for, each with the connection it came on: the
        # server of a new connection numbers its calls afresh, and must not get an old answer.
        self._waiting: Dict[Any, int] = {}
        self._connection = 0
        self._workers: Optional[ThreadPoolExecutor] = None

    def add(self, name: str, fn: Callable[[Any], Any]) -> Callable[[], None]:
        """See :meth:`IgorClient.expose <igor.client.IgorClient.expose>`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an exposed name is a non-empty string, not {name!r}")
        if not callable(fn):
            raise TypeError(f"expose({name!r}, fn): fn must be callable, not {type(fn).__name__}")
        with self._lock:
            self._functions[name] = fn

        def remove() -> None:
            with self._lock:
                if self._functions.get(name) is fn:
                    del self._functions[name]

        return remove

    def call(self, message: Message) -> None:
        """The server's ``{"callId", "action", "data"}``, or its ``cancel`` of one: from the reader thread."""
        call_id = message["callId"]
        with self._lock:
            if message.get("cancel"):
                self._waiting.pop(call_id, None)  # its answer, if it comes, is dropped
                return
            action = message.get("action")
            fn = self._functions.get(action) if isinstance(action, str) else None
            self._waiting[call_id] = connection = self._connection
            if self._workers is None:
                self._workers = ThreadPoolExecutor(EXPOSED_WORKERS, thread_name_prefix="igor-client-exposed")
            workers = self._workers
        workers.submit(self._answer, call_id, connection, action, fn, message.get("data"))

    def forget_calls(self) -> None:
        """The connection ended: the server waits for none of the answers any more."""
        with self._lock:
            self._waiting.clear()
            self._connection += 1

    def shutdown(self) -> None:
        """The client closed for good: let the worker threads go."""
        with self._lock:
            self._waiting.clear()
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)

    def _error_answer(self, call_id: Any, exc: Exception) -> Union[Message, str, Binary]:
        """The answer for an exposed function's exception: an IgorError's code and data go with it."""
        text, kind = str(exc) or type(exc).__name__, type(exc).__name__
        if not isinstance(exc, IgorError):
            return client_reply_error_message(call_id, text, 500, kind)
        code = exc.code if 400 <= exc.code <= 599 else 500  # a close code (ConnectionClosed) is no answer's code
        try:
            return self._encode(client_reply_error_message(call_id, text, code, kind, exc.data))
        except Exception:  # data the wire cannot carry: the error still gets through, without it
            log.warning("the data of %s raised by an exposed function cannot be sent; answering without it",
                        kind, exc_info=True)
            return client_reply_error_message(call_id, text, code, kind)

    def _answer(self, call_id: Any, connection: int, action: Any, fn: Optional[Callable[[Any], Any]],
                data: Any) -> None:
        answer: Union[Message, str, Binary]
        if fn is None:
            answer = client_reply_error_message(call_id, f"this client exposes no function {action!r}", 404,
                                                "UnknownAction")
        else:
            try:  # a result that is neither JSON nor binary is the function's error, not the connection's
                answer = self._encode(client_reply_message(call_id, fn(data)))
            except Exception as exc:
                log.debug("exposed function %r failed", action, exc_info=True)
                answer = self._error_answer(call_id, exc)
        with self._lock:
            if self._waiting.get(call_id) != connection:
                return  # the server stopped waiting (a timeout, the connection ended): it wants no answer
            del self._waiting[call_id]
        try:
            self._write(dumps(answer) if isinstance(answer, dict) else answer)
        except ConnectionClosed:
            pass
