"""A small synchronous Igor client, on ``websocket-client``.

One reader thread routes every message to the stream it belongs to, to the
push listeners, or (for the server's calls to functions this client exposed)
to a small pool of worker threads; calls block the calling thread only::

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
from typing import Any, Callable, Dict, Optional, Union

try:
    import websocket
except ImportError as exc:  # the optional "client" extra is not installed
    raise ImportError("igor's Python client needs websocket-client: pip install 'igor[client]'",
                      name=exc.name) from exc

from . import client_transfer
from .binary import Binary, dumps, unpack
from .client_pushes import Exposed, Listeners
from .client_reconnect import CLOSE_SERVICE_RESTART, Reconnect, Reconnecting
from .client_socket import CLOSE_NO_FRAME, binary_frame, close_status, connect, protocol_of
from .client_stream import CLOSED, ClientStream
from .client_support import DEFAULT, Listener, Timeout, remote_error, seconds
from .exceptions import BackendReloaded, BinaryUnsupported, ConnectionClosed, RemoteError
from .protocol import client_call_message, client_introduce_data, client_process_input_message

__all__ = ["IgorClient", "ClientStream", "Reconnect", "DEFAULT", "Timeout"]

log = logging.getLogger("igor.client")

Message = Dict[str, Any]


# How long close() waits for the server to answer its close frame before it
# cuts the socket anyway.
CLOSE_ANSWER_TIMEOUT = 3.0


class IgorClient(Reconnecting):
    """A connection to an Igor server.

    ``token`` is sent as ``Authorization: Bearer``. ``client_id``, if given, is
    claimed with ``introduce_self`` right after connecting, presenting
    ``resume``: the secret an earlier connection of that id was last given
    (its :attr:`resume`), without which a session the server parked for the
    id is refused. ``timeout`` bounds the connecting and is the default for
    calls (None or ``float('inf')`` waits for ever). A connection that cannot
    be made raises :class:`~igor.ConnectionFailed` (``status`` is the HTTP
    status when the server refused the handshake: 401, 403, 503).

    ``errors`` collects the server's errors that belong to no call: protocol
    errors, input for a stream that was not open, and the failures of
    processes (also given to ``on(process_id, error=...)``).

    Once the connection has ended, calls raise :class:`~igor.ConnectionClosed`
    (a ``ConnectionError`` too) whose ``code`` and ``reason`` are the close
    frame's, as are :attr:`close_code` and :attr:`close_reason`; after a
    close with code 1012 (``igor dev`` reloaded the backend) it is its
    subclass :class:`~igor.BackendReloaded`.

    ``reconnect=True`` (or a :class:`~igor.Reconnect` to tune it) connects
    again after the connection dropped, by itself: at once after a reload,
    else after a growing delay, and introduces the new connection with the
    same :attr:`client_id` and its :attr:`resume` secret, so the session is
    the same. Calls in flight at the drop fail as above; calls made while
    it reconnects wait for the connection within their timeout. Listeners
    and exposed functions stay. A refused handshake (HTTP 4xx but 409) is
    not retried; :meth:`close` stops for good.
    """

    def __init__(self, url: str, token: Optional[str] = None, client_id: Union[str, int, None] = None,
                 timeout: Optional[float] = 10.0, headers: Optional[Dict[str, str]] = None,
                 resume: Optional[str] = None, reconnect: Union[bool, Reconnect] = False):
        self.url = url
        self.timeout = timeout  # checked, and infinity made None, by the property
        self._policy = Reconnect.of(reconnect)
        self._header = [f"{name}: {value}" for name, value in (headers or {}).items()]
        if token is not None:
            self._header.append(f"Authorization: Bearer {token}")
        self._ids = itertools.count(1)
        self._streams: Dict[int, ClientStream] = {}
        self._listeners = Listeners()
        self._exposed = Exposed(self._encode, self._write)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        # "open", "reconnecting" or "closed" (for good), with _changed notified on each change.
        self._status = "open"
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()  # the current socket is down
        self._closing = False
        self._stop = threading.Event()  # close() was called: a reconnection waiting for its delay ends
        #: The WebSocket close code and reason, once the connection has ended
        #: (1005: a close frame with no code; 1006: no close frame at all).
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.errors: queue.SimpleQueue[RemoteError] = queue.SimpleQueue()
        self.client_id: Union[str, int, None] = None
        #: The latest secret the server gave for :attr:`client_id`: a later
        #: connection presents it (``resume=``) to get the id and its session back.
        self.resume: Optional[str] = None
        self._attach(self._connect())
        if client_id is not None:
            try:
                self.introduce_self(client_id, resume)
            except BaseException:
                self.close()
                raise

    # -- calls --------------------------------------------------------------

    @property
    def timeout(self) -> Optional[float]:
        """The default timeout of calls, in seconds; None for none."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._timeout = seconds(value)

    def stream(self, action: str, data: Any = None, timeout: Timeout = DEFAULT) -> ClientStream:
        """Start ``action`` and return its values as a :class:`ClientStream`.

        ``timeout`` bounds the wait for each value: the client's unless given;
        None or ``float('inf')`` waits for ever.
        """
        return self._open(action, data, self._timeout_of(timeout), whole=False)

    def call(self, action: str, data: Any = None, timeout: Timeout = DEFAULT) -> Any:
        """Run ``action`` and return its last value (None if it sent none).

        ``timeout`` bounds the whole call: the client's unless given; None or
        ``float('inf')`` waits for ever. Past it the call is cancelled and
        :class:`~igor.CallTimeout` raised.
        """
        result = None
        for value in self._open(action, data, self._timeout_of(timeout), whole=True):
            result = value
        return result

    def upload(self, action: str, source: client_transfer.Source, data: Any = None, *,
               chunk_size: int = client_transfer.CHUNK_SIZE, on_progress: Optional[client_transfer.Progress] = None,
               cancel: Optional[threading.Event] = None, size: Optional[int] = None,
               timeout: Timeout = DEFAULT) -> Any:
        """Call ``action`` with ``data``, send it ``source`` (bytes-like, a path, a binary file, an iterable of bytes).

        Chunks of ``chunk_size`` go as bare binary input (the handler reads
        them with ``out.receive()`` or ``out.receive_file()``), paced by its
        reads: no 429 however slow it is. ``on_progress(done, total)`` gets
        the bytes it has read; setting ``cancel`` (a ``threading.Event``)
        cancels the call and raises :class:`~igor.StreamCancelled`. Returns
        what the handler returns. Needs protocol 3 (else :class:`~igor.BinaryUnsupported`).
        """
        return client_transfer.upload(self, action, source, data, chunk_size=chunk_size, on_progress=on_progress,
                                      cancel=cancel, size=size, timeout=self._timeout_of(timeout))

    def download(self, action: str, data: Any = None, *, to: Any = None,
                 on_progress: Optional[client_transfer.Progress] = None, cancel: Optional[threading.Event] = None,
                 timeout: Timeout = DEFAULT) -> Union[bytes, int]:
        """Call ``action`` (a handler using ``out.send_file`` or ``out.send_chunks``) and collect its bytes.

        Returns them joined, or writes them to ``to`` (a path or binary file) and returns
        the count. ``on_progress(done, total)`` after each chunk; ``cancel`` as for :meth:`upload`.
        """
        return client_transfer.download(self, action, data, to=to, on_progress=on_progress, cancel=cancel,
                                        timeout=self._timeout_of(timeout))

    def _timeout_of(self, timeout: Timeout) -> Optional[float]:
        return self._timeout if timeout is DEFAULT else seconds(timeout)

    def introduce_self(self, client_id: Union[str, int], resume: Optional[str] = None) -> None:
        """Take ``client_id`` as this connection's id, and its parked session.

        A session the server parked (its client left less than
        ``session_timeout`` ago) goes only to the holder of its latest secret:
        ``resume``, or by default the one this client got for the same id.
        The server answers with a new secret, kept in :attr:`resume`. A
        refusal (409 ``ClientIdTaken``: the id is connected, or parked and the
        secret missing or stale) raises :class:`~igor.RemoteError`.
        """
        if resume is None and client_id == self.client_id:
            resume = self.resume
        self._introduce(client_id, resume, waits=True)

    def _introduce(self, client_id: Union[str, int], resume: Optional[str], waits: bool) -> None:
        # A reconnection introduces the new connection before anything else may use it (waits=False).
        stream = self._open("introduce_self", client_introduce_data(client_id, resume), self._timeout, True, waits)
        answer = None
        for answer in stream:  # noqa: B007  # the last value is the answer
            pass
        self.client_id = client_id
        # A server from before resume secrets answers without one.
        self.resume = answer.get("resume") if isinstance(answer, dict) else None

    def send_to_process(self, process_id: str, data: Any = None) -> None:
        """Put ``data`` in the inbox of background process ``process_id``.

        There is no reply; if the process does not exist, takes no input or
        has a full inbox, the server's error reaches ``on(process_id,
        error=...)`` listeners and :attr:`errors`.
        """
        if not isinstance(process_id, str) or not process_id:
            raise ValueError(f"a process id is a non-empty string, not {process_id!r}")
        self._wait_open(None if self._timeout is None else time.monotonic() + self._timeout)
        self._send(client_process_input_message(process_id, data))

    # -- pushes and server calls ----------------------------------------------

    def on(self, name: Optional[str], listener: Optional[Listener] = None, *,
           error: Optional[Callable[[RemoteError], None]] = None,
           complete: Optional[Callable[[], None]] = None) -> Callable[[], None]:
        """Listen to process pushes by push ``action`` or by process id.

        ``listener(data)`` is called for each push whose action or process id
        is ``name``. Listening by process id, ``error(RemoteError)`` also gets
        the process's failure and ``complete()`` its end. ``name=None``
        listens to every process: ``listener`` gets the whole push message,
        ``error`` and ``complete`` every process's failure and end.
        Listeners run on the reader thread: keep them short. Returns a
        function that removes the listener.
        """
        return self._listeners.add(name, listener, error, complete)

    def expose(self, name: str, fn: Callable[[Any], Any]) -> Callable[[], None]:
        """Let the server call ``fn(data)`` as ``name`` (``server.call_client(client_id, name, data)``).

        ``fn`` runs on a small pool of worker threads, never on the reader, so
        a slow one holds up no stream or push; its return value (JSON) is the
        answer, and an exception it raises is sent back as the error the
        server's caller gets as ``RemoteError`` (an :class:`~igor.IgorError`
        with its code, type and ``data``). Exposing a name again
        replaces its function. Returns a function that removes it.
        """
        return self._exposed.add(name, fn)

    # -- connection ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open: False once it ended, and while it reconnects."""
        return self._status == "open" and not self._closed.is_set()

    def close(self) -> None:
        """Close the connection (code 1000) and stop reconnecting; waiting calls fail with ConnectionClosed.

        Sends the close frame and lets the reader thread read the server's
        answer (so only one thread ever reads the socket), waits for it up to
        ``CLOSE_ANSWER_TIMEOUT`` seconds, then shuts the socket.
        """
        with self._lock:
            self._closing = True
        self._stop.set()
        try:
            with self._send_lock:
                self._ws.send_close(websocket.STATUS_NORMAL)
        except (websocket.WebSocketException, OSError):
            pass  # already gone: the reader has stopped or is stopping
        reader = self._reader
        if threading.current_thread() is not reader:
            reader.join(CLOSE_ANSWER_TIMEOUT)
            if reader.is_alive():
                log.debug("no close answer within %ss; cutting the connection", CLOSE_ANSWER_TIMEOUT)
                self._ws.abort()  # type: ignore[no-untyped-call]  # wakes the reader's blocking recv
                reader.join(CLOSE_ANSWER_TIMEOUT)
            self._shut()
        # else: called by a listener; the reader reads the answer and shuts the socket itself.
        self._fail_all(self._closed_error())
        self._set_status("closed")
        self._exposed.shutdown()

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Wait until the client has closed for good; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._status == "closed", seconds(timeout))

    def __enter__(self) -> IgorClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _open(self, action: str, data: Any, timeout: Optional[float], whole: bool, waits: bool = True) -> ClientStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if waits:
                self._wait_open(deadline)
            # call()'s timeout bounds the whole call, the waits for a connection included.
            stream = ClientStream(self, next(self._ids), action, timeout, whole, deadline)
            with self._lock:
                if waits and self._waits():
                    continue  # it dropped between the wait and now: wait for the next connection
                if self._closed.is_set() or self._status == "closed":
                    raise self._closed_error()
                self._streams[stream.stream_id] = stream
            try:
                self._send(client_call_message(stream.stream_id, action, data))
                return stream
            except ConnectionClosed:
                self._forget(stream.stream_id)
                if not waits or self._policy is None or self._closing:
                    raise
                # Not sent, so the handler never ran: the call waits for the next connection, once the
                # reader has seen this one end.
                self._closed.wait(CLOSE_ANSWER_TIMEOUT)
            except BaseException:
                self._forget(stream.stream_id)
                raise

    def _send(self, message: Message) -> None:
        self._write(self._encode(message))

    def _encode(self, message: Message) -> Union[str, Binary]:
        encoded = dumps(message)
        if isinstance(encoded, Binary) and self.protocol < 3:
            raise BinaryUnsupported(f"the server speaks protocol {self.protocol}, which cannot carry binary "
                                    "data (a server of this version offers igor.v3)")
        return encoded

    def _write(self, encoded: Union[str, Binary]) -> None:
        with self._send_lock:
            if self._closed.is_set():
                raise self._closed_error()
            try:
                if isinstance(encoded, Binary):
                    self._ws.send_frame(binary_frame(*encoded.pieces()))
                else:
                    self._ws.send(encoded)
            except (websocket.WebSocketException, OSError) as exc:
                # The reader may not have seen the end yet: without its close frame, the drop is all we know.
                code = CLOSE_NO_FRAME if self.close_code is None else self.close_code
                raise ConnectionClosed(f"could not send: {exc}", code, self.close_reason) from exc

    def _forget(self, stream_id: int) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def _connect(self) -> websocket.WebSocket:
        return connect(self.url, self.timeout, self._header)

    def _attach(self, ws: websocket.WebSocket) -> None:
        """Read ``ws`` from now on, on a reader thread of its own; under protocol 3, after the server's hello."""
        ws.settimeout(None)
        self._ws = ws
        #: The protocol the server chose: 3 carries binary values (bytes anywhere in a message), 2 does not.
        self.protocol = protocol_of(ws)
        #: The server's hello (protocol 3): ``max_message_size``, ``inbox_size``, ``input_window``.
        self.hello: Dict[str, Any] = {}
        self._hello = threading.Event()
        self.close_code, self.close_reason = None, ""
        self._closed.clear()
        self._reader = threading.Thread(target=self._read_loop, args=(ws,), name="igor-client-reader", daemon=True)
        self._reader.start()
        if self.protocol >= 3:
            self._hello.wait(self.timeout)  # the first message: calls may then rely on it (upload's chunks)

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        try:
            while True:
                opcode, payload = ws.recv_data(control_frame=False)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    # recv_data has answered it (once: see OneCloseWebSocket), or it
                    # is the answer to the close frame close() sent.
                    self.close_code, self.close_reason = close_status(payload)
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._dispatch(json.loads(payload.decode("utf-8")))
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    self._dispatch(unpack(payload))
        except (websocket.WebSocketException, OSError, ValueError) as exc:  # a ProtocolError too
            log.debug("reader stopped: %s", exc)
        finally:
            if self.close_code is None:
                self.close_code = CLOSE_NO_FRAME
            self._fail_all(self._closed_error())
            if self._closing:
                self._shut()
            self._lost()

    def _closed_error(self) -> ConnectionClosed:
        """What a call meets once the connection has ended (a fresh one each time: threads raise it at once)."""
        code, reason = self.close_code, self.close_reason
        if self._closing:
            # Asked for by close(), maybe on the reader thread before the server's answer came.
            return ConnectionClosed("the client closed the connection",
                                    websocket.STATUS_NORMAL if code is None else code, reason)
        if code is None:
            code = CLOSE_NO_FRAME
        why = f"code {code}: {reason}" if reason else f"code {code}"
        if code == CLOSE_SERVICE_RESTART:
            return BackendReloaded(f"the backend reloaded: the connection closed ({why})", code, reason)
        return ConnectionClosed(f"the connection closed ({why})", code, reason)

    def _shut(self) -> None:
        # Under the send lock, so that no send is half way through the socket.
        with self._send_lock:
            self._ws.shutdown()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: Message) -> None:
        if "hello" in message:
            self.hello = message["hello"] if isinstance(message["hello"], dict) else {}
            self._hello.set()
            return
        if "callId" in message:
            if not self._closed.is_set():
                self._exposed.call(message)
            return
        stream_id = message.get("streamId")
        if "action" in message:
            self._listeners.push(message, stream_id)
            return
        if "process" in message:  # the answer to send_to_process: only errors come back
            if "error" in message:
                self._process_error(message["process"], remote_error(message))
            return
        with self._lock:
            stream = self._streams.get(stream_id) if isinstance(stream_id, int) else None
        if stream is not None:
            if "read" in message:
                stream._on_read(message["read"])
                return
            if "error" in message:
                stream._answered = True
                stream._deliver(remote_error(message))
                return
            if "data" in message:
                stream._deliver(message["data"])
            if message.get("close"):  # alone, or (protocol 2) on the last value
                stream._answered = True
                stream._deliver(CLOSED)
        elif isinstance(stream_id, str):
            # Process ids are strings and this client's stream ids integers,
            # so a string id is a process's failure or end.
            if "error" in message:
                self._process_error(stream_id, remote_error(message))
            elif message.get("close"):
                self._listeners.completed(stream_id)
        elif "error" in message and stream_id is None:
            self.errors.put(remote_error(message))
        # Anything else is a late answer on a stream this client already ended.

    def _process_error(self, process_id: str, error: RemoteError) -> None:
        self.errors.put(error)
        self._listeners.failed(process_id, error)

    def _fail_all(self, error: Exception) -> None:
        with self._changed:
            self._closed.set()
            self._changed.notify_all()  # calls waiting to be sent (see _wait_open) hear of the drop
            streams = list(self._streams.values())
            self._streams.clear()
        self._exposed.forget_calls()
        for stream in streams:
            stream._deliver(error)
