"""A small synchronous Igor client, on ``websocket-client``.

One reader thread routes every message to the stream it belongs to, or to the
push listeners; calls block the calling thread only::

    with IgorClient('ws://127.0.0.1:5678/') as igor:
        print(igor.call('hello', {'name': 'Ada'}))
        for progress in igor.stream('jobs.run', {'steps': 3}):
            print(progress)
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import websocket

from .exceptions import CallTimeout, ConnectionClosed, RemoteError

__all__ = ["IgorClient", "ClientStream"]

log = logging.getLogger("igor.client")

_CLOSED = object()
Listener = Callable[[Any], None]


class ClientStream:
    """The values of one call, as an iterator; :meth:`cancel` stops it.

    Iterating raises :class:`~igor.RemoteError` if the server sends an error,
    :class:`~igor.ConnectionClosed` if the connection drops, and
    :class:`~igor.CallTimeout` if ``timeout`` seconds pass between values.
    """

    def __init__(self, client: IgorClient, stream_id: int, timeout: Optional[float]):
        self.client = client
        self.stream_id = stream_id
        self.timeout = timeout
        self.cancelled = False
        self.closed = False
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.closed:
            raise StopIteration
        try:
            item = self._inbox.get(timeout=self.timeout)
        except queue.Empty:
            self.cancel()
            raise CallTimeout(f"no answer on stream {self.stream_id} within {self.timeout}s") from None
        if item is _CLOSED:
            self._end()
            raise StopIteration
        if isinstance(item, Exception):
            self._end()
            raise item
        return item

    def cancel(self) -> None:
        """Ask the server to stop this stream; iteration ends at once."""
        if self.closed:
            return
        self.cancelled = True
        self._end()
        try:
            self.client._send({"streamId": self.stream_id, "cancel": True})
        except ConnectionClosed:
            pass

    def _end(self) -> None:
        self.closed = True
        self.client._forget(self.stream_id)

    def _deliver(self, item: Any) -> None:
        self._inbox.put(item)


class IgorClient:
    """A connection to an Igor server.

    ``token`` is sent as ``Authorization: Bearer``; ``client_id``, if given, is
    claimed with ``introduce_self`` right after connecting; ``timeout`` is the
    default for calls (None waits for ever).
    """

    def __init__(self, url: str, token: Optional[str] = None, client_id: Union[str, int, None] = None,
                 timeout: Optional[float] = 10.0, headers: Optional[Dict[str, str]] = None):
        self.url = url
        self.timeout = timeout
        header = [f"{name}: {value}" for name, value in (headers or {}).items()]
        if token is not None:
            header.append(f"Authorization: Bearer {token}")
        self._ws = websocket.create_connection(url, timeout=timeout, header=header, enable_multithread=True)
        self._ws.settimeout(None)
        self._ids = itertools.count(1)
        self._streams: Dict[int, ClientStream] = {}
        self._listeners: Dict[Optional[str], List[Listener]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self.close_code: Optional[int] = None
        self.errors: queue.SimpleQueue[RemoteError] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_loop, name="igor-client-reader", daemon=True)
        self._reader.start()
        self.client_id = None
        if client_id is not None:
            try:
                self.introduce_self(client_id)
            except BaseException:
                self.close()
                raise

    # -- calls --------------------------------------------------------------

    def stream(self, action: str, data: Any = None, timeout: Optional[float] = None) -> ClientStream:
        """Start ``action`` and return its values as a :class:`ClientStream`."""
        stream = ClientStream(self, next(self._ids), self.timeout if timeout is None else timeout)
        with self._lock:
            if self._closed.is_set():
                raise ConnectionClosed("the connection is closed")
            self._streams[stream.stream_id] = stream
        self._send({"streamId": stream.stream_id, "action": action, "data": data})
        return stream

    def call(self, action: str, data: Any = None, timeout: Optional[float] = None) -> Any:
        """Run ``action`` and return its last value (None if it sent none)."""
        deadline_timeout = self.timeout if timeout is None else timeout
        stream = self.stream(action, data, deadline_timeout)
        start = time.monotonic()
        result = None
        for value in stream:
            result = value
            if deadline_timeout is not None:
                stream.timeout = max(0.001, deadline_timeout - (time.monotonic() - start))
        return result

    def introduce_self(self, client_id: Union[str, int]) -> None:
        """Take ``client_id`` as this connection's id (and its parked session)."""
        self.call("introduce_self", {"client_id": client_id})
        self.client_id = client_id

    # -- pushes -------------------------------------------------------------

    def on(self, action: Optional[str], listener: Listener) -> Callable[[], None]:
        """Call ``listener(data)`` for each process push of ``action``.

        ``action=None`` listens to every push and gets the whole message.
        Listeners run on the reader thread: keep them short. Returns a
        function that removes the listener.
        """
        with self._lock:
            self._listeners.setdefault(action, []).append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners.get(action, []):
                    self._listeners[action].remove(listener)

        return remove

    # -- connection ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        """Close the connection; waiting calls fail with ConnectionClosed."""
        try:
            self._ws.close()
        except Exception:
            pass
        self._reader.join(5)
        self._fail_all(ConnectionClosed("the client closed the connection"))

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Wait until the server ends the connection."""
        return self._closed.wait(timeout)

    def __enter__(self) -> IgorClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _send(self, message: dict) -> None:
        text = json.dumps(message)
        with self._send_lock:
            if self._closed.is_set():
                raise ConnectionClosed("the connection is closed")
            try:
                self._ws.send(text)
            except (websocket.WebSocketException, OSError) as exc:
                raise ConnectionClosed(f"could not send: {exc}") from exc

    def _forget(self, stream_id: int) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def _read_loop(self) -> None:
        try:
            while True:
                opcode, payload = self._ws.recv_data(control_frame=False)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(payload) >= 2:
                        self.close_code = int.from_bytes(payload[:2], "big")
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._dispatch(json.loads(payload.decode("utf-8")))
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            log.debug("reader stopped: %s", exc)
        finally:
            self._fail_all(ConnectionClosed(f"the connection closed (code {self.close_code})"))

    def _dispatch(self, message: dict) -> None:
        stream_id = message.get("streamId")
        if "action" in message:
            with self._lock:
                listeners = list(self._listeners.get(message["action"], ())) + list(self._listeners.get(None, ()))
                specific = len(self._listeners.get(message["action"], ()))
            for index, listener in enumerate(listeners):
                try:
                    listener(message.get("data") if index < specific else message)
                except Exception:
                    log.exception("push listener failed")
            return
        with self._lock:
            stream = self._streams.get(stream_id) if stream_id is not None else None
        if "error" in message:
            error = RemoteError(message["error"], message.get("code", 500), message.get("type", "Error"),
                                message.get("traceback"))
            if stream is None:
                self.errors.put(error)
            else:
                stream._deliver(error)
        elif stream is None:
            return
        elif message.get("close"):
            stream._deliver(_CLOSED)
        elif "data" in message:
            stream._deliver(message["data"])

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            self._closed.set()
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream._deliver(error)
