"""What handlers and processes hold: ``flatten``, :class:`Stream`, :class:`ProcessOutput`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Union

from .exceptions import StreamCancelled, StreamClosed
from .protocol import StreamId, close_message, data_message, encode, error_message, push_message
from .registry import Client, ClientId

if TYPE_CHECKING:
    from .server import IgorServer

__all__ = ["flatten", "Stream", "ProcessOutput"]


def flatten(api: Mapping[str, Any], separator: str = ".") -> Dict[str, Callable]:
    """Flatten nested dicts of handlers into ``{"events.create": handler, ...}``.

    The caller's dict is left as it is. A leaf that is not callable, or two
    paths that flatten to the same name, raise ``ValueError``.
    """
    flat: Dict[str, Callable] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"action names must be non-empty strings, got {key!r} under {prefix or 'the top'}")
            name = f"{prefix}{separator}{key}" if prefix else key
            if isinstance(value, Mapping):
                walk(name, value)
            elif not callable(value):
                raise ValueError(f"action {name!r} is not callable: {value!r}")
            elif name in flat:
                raise ValueError(f"two actions flatten to the same name {name!r}")
            else:
                flat[name] = value

    walk("", api)
    return flat


class Stream:
    """The ``out`` a handler gets: one call's way back to its client.

    A stream sends any number of data messages, or an error, and closes once;
    the server closes it when the handler returns. After the client cancels
    or disconnects, :attr:`cancelled` is true and the next :meth:`send` raises
    :class:`~igor.StreamCancelled`, which ends the handler quietly.
    """

    def __init__(self, client: Client, stream_id: StreamId, debug: bool = False):
        self.client = client
        self.stream_id = stream_id
        self._debug = debug
        self._lock = threading.Lock()
        self._closed = False
        self._cancelled = threading.Event()

    @property
    def closed(self) -> bool:
        """True once the stream's close has been sent (or it was cancelled)."""
        return self._closed

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled the stream or went away."""
        return self._cancelled.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds; True at once if the stream is cancelled.

        Use it where a handler would ``time.sleep``, so a cancel stops it
        without waiting for the sleep to end.
        """
        return self._cancelled.wait(timeout)

    def send(self, data: Any = None) -> None:
        """Send one value to the client (any JSON-serialisable value)."""
        self._emit(encode(data_message(self.stream_id, data)))

    def send_error(self, error: Union[BaseException, str], code: Optional[int] = None,
                   traceback: Optional[str] = None) -> None:
        """Send an error and close the stream.

        ``error`` is an exception (its class name becomes the ``type``) or a
        message; ``code`` defaults to the exception's own code, else 500.
        """
        self._emit(encode(error_message(error, self.stream_id, code, traceback if self._debug else None)),
                   then_close=True)

    def close(self) -> None:
        """End the stream; does nothing if it has already ended."""
        with self._lock:
            if self._closed:
                return
            self._finish(encode(close_message(self.stream_id)))

    def cancel(self) -> None:
        """Mark the stream cancelled and send its close at once (server side)."""
        if self._closed:
            return
        # The event first: a handler blocked in a send (a client not reading)
        # sees it, gives up, and releases the lock taken below.
        self._cancelled.set()
        with self._lock:
            if self._closed:
                return
            # Never wait here: cancels come from the reader thread and shutdown.
            self._finish(encode(close_message(self.stream_id, cancelled=True)), wait=False)

    def _emit(self, payload: bytes, then_close: bool = False) -> None:
        with self._lock:
            if self._cancelled.is_set():
                raise StreamCancelled(f"stream {self.stream_id!r} was cancelled")
            if self._closed:
                raise StreamClosed(f"stream {self.stream_id!r} is closed")
            if not self.client.send(payload, True, self._cancelled):
                self._cancelled.set()
                self._finish(None)
                raise StreamCancelled(f"stream {self.stream_id!r} was cancelled or its client is gone")
            if then_close:
                self._finish(encode(close_message(self.stream_id)))

    def _finish(self, close_payload: Optional[bytes], wait: bool = True) -> None:
        # Called with the lock held, so the close is always the last message.
        self._closed = True
        with self.client.streams_lock:
            if self.client.streams.get(self.stream_id) is self:
                del self.client.streams[self.stream_id]
        if close_payload is not None:
            self.client.send(close_payload, wait)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "closed" if self._closed else "open"
        return f"<Stream {self.stream_id!r} of client {self.client.id!r} {state}>"


class ProcessOutput:
    """A background process's way to reach clients: everyone, or one client id."""

    def __init__(self, server: IgorServer, process_id: StreamId):
        self.server = server
        self.process_id = process_id

    def send(self, action: str, data: Any = None, client_id: Optional[ClientId] = None) -> None:
        """Push ``{"streamId": process_id, "action": action, "data": data}``.

        Without ``client_id`` it goes to every connected client; with one, only
        to that client, and :class:`~igor.UnknownClient` if none has that id.
        """
        self._deliver(encode(push_message(self.process_id, action, data)), client_id)

    def send_error(self, error: Union[BaseException, str], code: Optional[int] = None,
                   client_id: Optional[ClientId] = None) -> None:
        """Report a failure of this process to every client, or to one."""
        self._deliver(encode(error_message(error, self.process_id, code)), client_id)

    def finish(self, client_id: Optional[ClientId] = None) -> None:
        """Tell clients this process has finished its work."""
        self._deliver(encode(close_message(self.process_id)), client_id)

    def _deliver(self, payload: bytes, client_id: Optional[ClientId]) -> None:
        # wait=False: a slow client is disconnected rather than stalling the process.
        if client_id is None:
            for client in self.server.registry.clients():
                client.send(payload, False)
        else:
            self.server.registry.get(client_id).send(payload, False)
