"""The WebSocket transport: Igor's subclass of websocket-server's server and handler.

websocket-server (Pithikos) gives a TCP server with a thread per connection.
This module keeps that shape and replaces what is unsafe in it:

- frames are written whole with ``sendall`` by one writer thread per
  connection, fed by a bounded queue, so frames from many threads never
  interleave or get cut, and a slow reader cannot stall other clients;
- payloads are unmasked in one C-level operation instead of a Python loop;
- fragmented messages are reassembled, binary frames are read and refused,
  and every framing fault closes with the code RFC 6455 gives it;
- the handshake keeps the request's path, query and headers, runs the
  security checks of :mod:`igor.handshake`, and answers a bad request with an
  HTTP error instead of a stack trace;
- ``TCP_NODELAY`` is set, or Nagle's algorithm and delayed ACKs add about
  40 ms to every call's two-frame reply.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional

from . import static
from .frames import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    build_close,
    build_frame,
    parse_close,
    parse_header,
    unmask,
)
from .handshake import (
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    HandshakeError,
    Request,
    http_response,
    parse_request,
    switching_protocols,
)
from .registry import Client

_root = logging.getLogger()
_root_had_handlers = bool(_root.handlers)
import websocket_server  # noqa: E402

# websocket-server calls logging.basicConfig() when imported; a library must
# leave the root logger to the application, so undo that side effect.
if not _root_had_handlers:
    for _handler in list(_root.handlers):
        _root.removeHandler(_handler)

if TYPE_CHECKING:
    from .server import IgorServer

log = logging.getLogger("igor")

MAX_PENDING_HANDSHAKES = 64
CLOSE_TIMEOUT = 2.0
_READ_CHUNK = 1 << 20
_SEND_SLICE = 0.05


class _Closed(Exception):
    """The peer closed the TCP connection, or it broke."""


class _Stop:
    """Writer-queue marker: send this close frame last, then stop writing."""

    def __init__(self, frame: bytes):
        self.frame = frame


class IgorHandler(websocket_server.WebSocketHandler):
    """One connection: handshake, then frames in on this thread, out on a writer thread."""

    server: IgorTransport

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client: Optional[Client] = None
        self.last_seen = time.monotonic()
        self.ping_sent: Optional[float] = None
        self.closing_since: Optional[float] = None
        # Frames for the writer thread. Data frames are bounded by
        # send_queue_size; control frames (pong, ping, close) always fit, so
        # a close can follow whatever is queued without anyone waiting.
        self._outbox: Deque[object] = deque()
        self._outbox_ready = threading.Condition()
        self._outbox_limit = self.server.igor.config["send_queue_size"]
        self._writer: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self._finished = threading.Event()
        self._close_lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------

    def handle(self) -> None:
        igor = self.server.igor
        try:
            request = self._handshake()
            if request is None:
                return
            self.client = Client(self.send_text_message, self.close, self.client_address,
                                 request.path, request.query, request.headers)
            self._writer = threading.Thread(target=self._write_loop, name="igor-writer", daemon=True)
            self._writer.start()
            igor._client_connected(self.client)
            self._read_loop()
        except (_Closed, OSError):
            pass
        except FrameError as exc:
            log.warning("client %s: %s; closing with %d", self._name, exc.reason, exc.close_code)
            self.close(exc.close_code, exc.reason)
        except Exception:
            log.exception("client %s: transport error", self._name)
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def finish(self) -> None:
        """Tear the connection down; runs once, after :meth:`handle`."""
        self._finished.set()
        try:
            if self.client is not None:
                self.server.igor._client_left(self.client)
        except Exception:
            log.exception("client %s: error while leaving", self._name)
        finally:
            self._closing.set()
            if self._writer is not None:
                self._outbox_put(_Stop(b""))
                self._writer.join(CLOSE_TIMEOUT)
                self._drain()
            self.server.remove_handler(self)
            try:
                self.request.close()
            except OSError:
                pass

    @property
    def _name(self) -> str:
        return repr(self.client.id) if self.client is not None else f"{self.client_address}"

    # -- handshake ----------------------------------------------------------

    def _handshake(self) -> Optional[Request]:
        """Answer the opening request; the upgraded request, or None when answered over HTTP.

        The transport's watchdog aborts a handshake that takes longer than
        ``handshake_timeout`` seconds in all, so a client feeding one byte at a time
        cannot hold the thread.
        """
        igor = self.server.igor
        try:
            request = parse_request(self._header_lines())
            if not request.is_upgrade:
                igor.policy.check_host(request)
                status, response = static.respond(igor.config["static_dir"], request)
                log.info("HTTP %s %s -> %d", request.method, request.path, status)
                self.request.sendall(response)
                return None
            igor.policy.check_websocket(request)
            self.server.admit(self)
        except HandshakeError as exc:
            log.warning("refused handshake from %s: %d %s", self.client_address, exc.status, exc.reason)
            self._send_quietly(http_response(exc.status, extra_headers=exc.headers))
            return None
        except (OSError, _Closed):
            return None
        self.request.sendall(switching_protocols(request))
        return request

    def _header_lines(self) -> List[bytes]:
        lines: List[bytes] = []
        while True:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if not line:
                raise _Closed()
            if len(line) > MAX_REQUEST_LINE or not line.endswith(b"\n"):
                raise HandshakeError(400, "request line or header too long")
            if line in (b"\r\n", b"\n"):
                return lines
            lines.append(line)
            if len(lines) > MAX_HEADERS + 1:
                raise HandshakeError(400, "too many headers")

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.request.sendall(data)
        except OSError:
            pass

    # -- reading ------------------------------------------------------------

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise _Closed()
        return data

    def _read_loop(self) -> None:
        igor = self.server.igor
        limit = igor.config["max_message_size"]
        fragments: List[bytes] = []
        buffered = 0
        in_message = False
        while not self._closing.is_set():
            first, second = self._read_exact(2)
            fin, opcode, length = parse_header(first, second)
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(8))
                if length >> 63:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "64-bit length with the most significant bit set")
            self.last_seen = time.monotonic()
            self.ping_sent = None

            if opcode == OP_CONTINUATION and not in_message:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
            if opcode in (OP_TEXT, OP_BINARY) and in_message:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "new message before the previous one ended")
            if opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY) and buffered + length > limit:
                raise FrameError(CLOSE_TOO_BIG, f"message larger than max_message_size ({limit} bytes)")
            mask = self._read_exact(4)

            if opcode == OP_BINARY:
                # Read it off the wire (so the close frame is not lost in a
                # reset), keep none of it, and refuse.
                self._skip(length)
                raise FrameError(CLOSE_UNSUPPORTED_DATA, "binary messages are not supported")
            payload = bytearray(length)
            if length and self.rfile.readinto(payload) != length:
                raise _Closed()
            unmask(payload, mask)  # in place: a 10 MB message is one buffer, copied once

            if opcode == OP_PING:
                self._outbox_put(build_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code, _ = parse_close(payload)
                self.close(CLOSE_NORMAL if code is None else code, "")
                return
            elif opcode != OP_PONG:
                fragments.append(payload)
                buffered += length
                in_message = not fin
                if in_message:
                    continue
                data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
                fragments, buffered = [], 0
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
                if self._closing.is_set():
                    return
                igor._message_received(self.client, text)

    def _skip(self, length: int) -> None:
        while length:
            length -= len(self._read_exact(min(length, _READ_CHUNK)))

    # -- writing ------------------------------------------------------------

    def send_text_message(self, payload: bytes, wait: bool = True,
                          abandon: Optional[threading.Event] = None) -> bool:
        """Queue a text frame with a UTF-8 payload; False if it was not queued.

        A full queue means the client is not reading. A waiting sender gets up
        to ``send_timeout`` seconds of back-pressure, giving up early when the
        connection closes or ``abandon`` is set; a non-waiting sender gets
        none. Then the client is disconnected as a slow consumer.
        """
        frame = build_frame(OP_TEXT, payload)
        deadline = time.monotonic() + self.server.igor.config["send_timeout"]
        with self._outbox_ready:
            while len(self._outbox) >= self._outbox_limit:
                if self._closing.is_set() or (abandon is not None and abandon.is_set()):
                    return False
                if not wait or time.monotonic() >= deadline:
                    break
                self._outbox_ready.wait(_SEND_SLICE)
            else:
                if self._closing.is_set():
                    return False
                self._outbox.append(frame)
                self._outbox_ready.notify_all()
                return True
        log.warning("client %s reads too slowly; disconnecting it", self._name)
        self.close(CLOSE_POLICY_VIOLATION, "client reads too slowly")
        return False

    def send_ping(self) -> None:
        self.ping_sent = time.monotonic()
        self._outbox_put(build_frame(OP_PING, b"igor"))

    def _outbox_put(self, item: object) -> None:
        """Queue a control frame (or the writer's stop), beyond the data bound."""
        with self._outbox_ready:
            self._outbox.append(item)
            self._outbox_ready.notify_all()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame after what is queued, then end the connection. Never blocks."""
        with self._close_lock:
            if self._closing.is_set():
                return
            self._closing.set()
            self.closing_since = time.monotonic()
        if self._writer is None:
            self.abort()
        else:
            self._outbox_put(_Stop(build_close(code, reason)))

    def abort(self) -> None:
        """Cut the connection at once; the reader thread then ends it."""
        self._closing.set()
        with self._outbox_ready:
            self._outbox_ready.notify_all()  # senders waiting for room give up
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_loop(self) -> None:
        sock = self.request
        while True:
            with self._outbox_ready:
                while not self._outbox:
                    self._outbox_ready.wait()
                batch = [self._outbox.popleft() for _ in range(min(64, len(self._outbox)))]
                self._outbox_ready.notify_all()  # room for waiting senders
            stop = next((item for item in batch if isinstance(item, _Stop)), None)
            if stop is not None:
                # Frames queued after the close frame are dropped on purpose.
                batch = batch[: batch.index(stop)] + [stop.frame]
            try:
                sock.sendall(b"".join(batch))
                if stop is not None:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.abort()
                return
            if stop is not None:
                # Give the peer time to answer our close, then unblock the reader.
                if not self._finished.wait(CLOSE_TIMEOUT):
                    self.abort()
                return

    def _drain(self) -> None:
        """Read until the peer closes, so it gets our close frame, not a reset."""
        try:
            self.request.settimeout(CLOSE_TIMEOUT)
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while time.monotonic() < deadline and self.request.recv(65536):
                pass
        except OSError:
            pass


class IgorTransport(websocket_server.WebsocketServer):
    """websocket-server's threaded TCP server, answering with :class:`IgorHandler`.

    It keeps two tables under one lock: connections still in their opening
    handshake (capped, and aborted by :meth:`expire_handshakes` when too
    slow) and upgraded connections (capped by ``max_clients``).
    """

    request_queue_size = 128
    daemon_threads = True

    def __init__(self, igor: IgorServer, host: str, port: int):
        self.igor = igor
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._lock = threading.Condition()
        self._handlers: List[IgorHandler] = []
        self._pending: Dict[socket.socket, float] = {}
        self._closing = False
        super().__init__(host=host, port=port, loglevel=logging.getLogger("igor").getEffectiveLevel())
        self.RequestHandlerClass = IgorHandler

    def verify_request(self, request: socket.socket, client_address: Any) -> bool:
        """Runs on the accepting thread: refuse before a thread is spent on it."""
        with self._lock:
            if not self._closing and len(self._pending) < max(MAX_PENDING_HANDSHAKES, self.igor.config["max_clients"]):
                self._pending[request] = time.monotonic()
                return True
        log.warning("refused connection from %s: too many pending handshakes", client_address)
        try:
            request.send(http_response(503))
        except OSError:
            pass
        return False

    def admit(self, handler: IgorHandler) -> None:
        """Count an upgraded connection in, or raise the HTTP refusal."""
        limit = self.igor.config["max_clients"]
        with self._lock:
            if self._closing:
                raise HandshakeError(503, "the server is shutting down")
            if limit and len(self._handlers) >= limit:
                raise HandshakeError(503, "max_clients reached")
            self._pending.pop(handler.request, None)
            self._handlers.append(handler)

    def remove_handler(self, handler: IgorHandler) -> None:
        with self._lock:
            self._pending.pop(handler.request, None)
            if handler in self._handlers:
                self._handlers.remove(handler)
            self._lock.notify_all()

    def expire_handshakes(self) -> None:
        """Abort connections whose handshake has taken longer than ``handshake_timeout``."""
        limit = time.monotonic() - self.igor.config["handshake_timeout"]
        with self._lock:
            late = [sock for sock, started in self._pending.items() if started < limit]
        for sock in late:
            log.warning("handshake from %s took too long; dropping it", _peer(sock))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def expire_closing(self) -> None:
        """Cut connections whose close frame is stuck behind a peer that does not read."""
        limit = time.monotonic() - 2 * CLOSE_TIMEOUT
        for handler in self.handlers():
            if handler.closing_since is not None and handler.closing_since < limit:
                handler.abort()

    def handlers(self) -> List[IgorHandler]:
        with self._lock:
            return list(self._handlers)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every connection and admit no new one."""
        with self._lock:
            self._closing = True
            pending = list(self._pending)
        for sock in pending:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for handler in self.handlers():
            handler.close(code, reason)

    def wait_until_empty(self, timeout: float) -> bool:
        """Wait until every connection has ended; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._handlers and not self._pending, timeout)

    def handle_error(self, request, client_address) -> None:
        log.exception("unexpected error with connection %s", client_address)


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return "?"
