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
import queue
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, List, Optional

from . import static
from .frames import (
    CLOSE_GOING_AWAY,
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
from .handshake import MAX_REQUEST_LINE, HandshakeError, Request, http_response, parse_request, switching_protocols
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

HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
_READ_CHUNK = 1 << 20


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
        self._outbox: queue.Queue = queue.Queue(self.server.igor.config["send_queue_size"])
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
            self._writer = threading.Thread(target=self._write_loop, name="igor-writer", daemon=True)
            self._writer.start()
            self.client = Client(self.send_text_message, self.close, self.client_address,
                                 request.path, request.query, request.headers)
            self.server.add_handler(self)
            igor._client_connected(self.client)
            self._read_loop()
        except (_Closed, OSError):
            pass
        except FrameError as exc:
            log.warning("client %s: %s; closing with %d", self._name, exc.reason, exc.close_code)
            self.close(exc.close_code, exc.reason)
        except Exception:
            log.exception("client %s: transport error", self._name)
            self.close(1011, "internal error")

    def finish(self) -> None:
        """Tear the connection down; runs once, after :meth:`handle`."""
        self._finished.set()
        if self.client is not None:
            self.server.remove_handler(self)
            self.server.igor._client_left(self.client)
            self._closing.set()
            self._outbox_put(_Stop(b""))
            if self._writer is not None:
                self._writer.join(CLOSE_TIMEOUT)
            self._drain()
        try:
            self.request.close()
        except OSError:
            pass

    @property
    def _name(self) -> str:
        return repr(self.client.id) if self.client is not None else f"{self.client_address}"

    # -- handshake ----------------------------------------------------------

    def _handshake(self) -> Optional[Request]:
        igor = self.server.igor
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            request = parse_request(self._header_lines())
            if not request.is_upgrade:
                igor.policy.check_host(request)
                status, response = static.respond(igor.config["static_dir"], request)
                log.info("HTTP %s %s -> %d", request.method, request.path, status)
                self.request.sendall(response)
                return None
            igor.policy.check_websocket(request)
            if igor.config["max_clients"] and self.server.client_count() >= igor.config["max_clients"]:
                raise HandshakeError(503, "max_clients reached")
        except HandshakeError as exc:
            log.warning("refused handshake from %s: %d %s", self.client_address, exc.status, exc.reason)
            self._send_quietly(http_response(exc.status))
            return None
        except (OSError, _Closed):
            return None
        self.request.sendall(switching_protocols(request))
        self.request.settimeout(None)
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
            if len(lines) > 101:
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
        message_opcode: Optional[int] = None
        while not self._closing.is_set():
            first, second = self._read_exact(2)
            fin, opcode, length = parse_header(first, second)
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(8))
            self.last_seen = time.monotonic()
            self.ping_sent = None

            if opcode == OP_CONTINUATION:
                if message_opcode is None:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
            elif opcode in (OP_TEXT, OP_BINARY) and message_opcode is not None:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "new message before the previous one ended")
            if opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY) and buffered + length > limit:
                raise FrameError(CLOSE_TOO_BIG, f"message larger than max_message_size ({limit} bytes)")

            mask = self._read_exact(4)
            payload = unmask(self._read_payload(length), mask)

            if opcode == OP_PING:
                self._outbox_put(build_frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code, _ = parse_close(payload)
                self.close(CLOSE_NORMAL if code is None else code, "")
                return
            else:
                if opcode != OP_CONTINUATION:
                    message_opcode = opcode
                fragments.append(payload)
                buffered += length
                if not fin:
                    continue
                data = b"".join(fragments)
                fragments, buffered, kind, message_opcode = [], 0, message_opcode, None
                if kind == OP_BINARY:
                    raise FrameError(CLOSE_UNSUPPORTED_DATA, "binary messages are not supported")
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
                igor._message_received(self.client, text)

    def _read_payload(self, length: int) -> bytes:
        if length <= _READ_CHUNK:
            return self._read_exact(length)
        chunks = []
        while length:
            chunk = self._read_exact(min(length, _READ_CHUNK))
            chunks.append(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    # -- writing ------------------------------------------------------------

    def send_text_message(self, text: str, wait: bool = True) -> bool:
        """Queue a text frame. False if the connection is closing.

        A full queue means the client is not reading: a waiting sender gets
        ``send_timeout`` seconds of back-pressure, a non-waiting one none;
        then the client is disconnected as a slow consumer.
        """
        if self._closing.is_set():
            return False
        frame = build_frame(OP_TEXT, text.encode("utf-8"))
        timeout = self.server.igor.config["send_timeout"]
        try:
            self._outbox.put(frame, block=wait, timeout=timeout if wait else None)
        except queue.Full:
            log.warning("client %s reads too slowly; disconnecting it", self._name)
            self.close(CLOSE_POLICY_VIOLATION, "client reads too slowly")
            return False
        return True

    def send_ping(self) -> None:
        self.ping_sent = time.monotonic()
        self._outbox_put(build_frame(OP_PING, b"igor"))

    def _outbox_put(self, item: object) -> None:
        try:
            self._outbox.put_nowait(item)
        except queue.Full:
            # The writer is stuck behind a peer that does not read; cutting
            # the connection is the only way to free it.
            self.abort()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame after what is queued, then end the connection."""
        with self._close_lock:
            if self._closing.is_set():
                return
            self._closing.set()
        if self._writer is None:
            self.abort()
            return
        try:
            self._outbox.put(_Stop(build_close(code, reason)), timeout=CLOSE_TIMEOUT)
        except queue.Full:
            self.abort()

    def abort(self) -> None:
        """Cut the connection at once; the reader thread then ends it."""
        self._closing.set()
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_loop(self) -> None:
        sock = self.request
        while True:
            batch = [self._outbox.get()]
            try:
                while len(batch) < 64:
                    batch.append(self._outbox.get_nowait())
            except queue.Empty:
                pass
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
    """websocket-server's threaded TCP server, answering with :class:`IgorHandler`."""

    request_queue_size = 128
    daemon_threads = True

    def __init__(self, igor: IgorServer, host: str, port: int):
        self.igor = igor
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._handlers_lock = threading.Condition()
        self._handlers: List[IgorHandler] = []
        super().__init__(host=host, port=port, loglevel=logging.getLogger("igor").getEffectiveLevel())
        self.RequestHandlerClass = IgorHandler

    def add_handler(self, handler: IgorHandler) -> None:
        with self._handlers_lock:
            self._handlers.append(handler)

    def remove_handler(self, handler: IgorHandler) -> None:
        with self._handlers_lock:
            if handler in self._handlers:
                self._handlers.remove(handler)
            self._handlers_lock.notify_all()

    def wait_until_empty(self, timeout: float) -> bool:
        """Wait until every connection has ended; False on timeout."""
        with self._handlers_lock:
            return self._handlers_lock.wait_for(lambda: not self._handlers, timeout)

    def handlers(self) -> List[IgorHandler]:
        with self._handlers_lock:
            return list(self._handlers)

    def client_count(self) -> int:
        with self._handlers_lock:
            return len(self._handlers)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for handler in self.handlers():
            handler.close(code, reason)

    def handle_error(self, request, client_address) -> None:
        log.exception("unexpected error with connection %s", client_address)
