"""One client socket: the opening handshake, bytes into the frame parser, frames out.

Reading happens on the connection's own thread (the one websocket-server
gives each connection). Writing happens on whichever thread sends, under the
connection's lock: a frame is written straight through with a non-blocking
``send`` when nothing is queued, which costs no thread hop. Only when the
socket's buffer is full does the rest go to a bounded backlog (an
:class:`~igor.outbox.Outbox`), drained by a writer thread that exists while
there is a backlog and ends when it is gone; an idle connection holds one
thread and no buffers.

The backlog is bounded in frames and in bytes. A sender that finds it full
either waits (a handler: back-pressure on its own stream) or gives up (a
process, a cancel, a pong), and a backlog that makes no progress for
``send_timeout`` seconds marks a slow consumer, which is closed with 1008 and
cut off if it still reads nothing. Pongs never queue up: a newer ping's pong
replaces the one not yet written.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, List, Optional, Protocol

from .config import Config
from .frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    OP_PING,
    OP_PONG,
    BinaryMessage,
    Close,
    Event,
    Frame,
    FrameError,
    FrameParser,
    Ping,
    TextMessage,
    build_close,
    build_frame,
    frame_size,
    text_frame,
)
from .handshake import (
    HandshakeError,
    Request,
    SecurityPolicy,
    chosen_protocol,
    http_response,
    parse_request,
    split_head,
    switching_protocols,
)
from .outbox import Chunk, Outbox
from .protocol import hello_message
from .registry import ConnectedClient

__all__ = ["Connection", "Receiver", "Transport", "CLOSE_HANDSHAKE_TIMEOUT"]

log = logging.getLogger("igor")

#: Seconds a closing connection gets to exchange close frames before it is cut.
CLOSE_HANDSHAKE_TIMEOUT = 2.0
_RECV_IDLE = 4096
_RECV_MAX = 1 << 20
_IOV_MAX = 1024  # frames per sendmsg: POSIX guarantees at least 16, Linux and macOS take 1024
# Seconds a writer thread with nothing left to write waits for more before it ends.
_LINGER = 0.05
_SLICE = 0.05
# Linux and macOS can write without blocking on a blocking socket; elsewhere every frame goes through the writer.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class Receiver(Protocol):
    """What a connection tells the dispatcher: a client came, sent a message, left."""

    def connected(self, client: ConnectedClient) -> None: ...

    def received(self, client: ConnectedClient, text: str) -> None: ...

    def received_binary(self, client: ConnectedClient, payload: Any) -> None: ...

    def disconnected(self, client: ConnectedClient) -> None: ...


class Transport(Protocol):
    """What a connection needs of the server that accepted it (an :class:`~igor.transport.IgorTransport`).

    Named here, not imported, so that the transport depends on the
    connection and never the other way round.
    """

    config: Config
    policy: SecurityPolicy
    #: Whom the connection tells about its client.
    receiver: Receiver

    def request_line_arrived(self, sock: socket.socket) -> None:
        """The first line of the opening request is in: the handshake is no longer slow to start."""

    def answer_http(self, sock: socket.socket, request: Request) -> None:
        """Answer a plain HTTP request (no upgrade) whose Host has been checked."""

    def admit(self, connection: Connection) -> None:
        """Count an upgraded connection in, or raise the :class:`~igor.handshake.HandshakeError` refusing it."""

    def forget(self, connection: Connection) -> None:
        """The connection has ended: it no longer counts against any bound."""


class _Closed(Exception):
    """The peer closed the TCP connection, or it broke."""


class Connection:
    """A WebSocket connection to one client, from handshake to teardown."""

    def __init__(self, sock: socket.socket, address: Any, transport: Transport):
        self.sock = sock
        self.address = address
        self.client: Optional[ConnectedClient] = None
        self._transport = transport
        config = transport.config
        self._send_timeout = config.send_timeout
        self.last_seen = time.monotonic()
        self.ping_sent: Optional[float] = None
        self.closing_since: Optional[float] = None
        # Every frame takes the mutex (a C-level lock); the condition on it is for those that wait.
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)
        # What the socket has not taken yet; read and changed only under the mutex.
        self._outbox = Outbox(config.send_queue_size, config.send_queue_bytes)
        self._writing = False           # a writer thread owns the socket's write side
        self._progress = time.monotonic()
        self._closing = False  # set once, read without the lock: a plain flag is cheapest
        #: False until the client sends its first message: a full server may evict one that never does.
        self.spoke = False
        self.admitted_at = 0.0

    @property
    def name(self) -> str:
        return repr(self.client.id) if self.client is not None else str(self.address)

    # -- life cycle ---------------------------------------------------------

    def run(self) -> None:
        """Serve the connection until it ends; runs on the connection's thread."""
        receiver = self._transport.receiver
        try:
            rest = self._handshake()
            if rest is None:
                return
            receiver.connected(self.client)
            self._read_loop(rest)
        except (_Closed, OSError):
            pass
        except FrameError as exc:
            log.warning("client %s: %s; closing with %d", self.name, exc.reason, exc.close_code)
            self.close(exc.close_code, exc.reason)
            self._drain()
        except Exception:
            log.exception("client %s: transport error", self.name)
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
            self._drain()
        finally:
            self._teardown()

    def _teardown(self) -> None:
        try:
            if self.client is not None:
                self.client.connected = False
                self._transport.receiver.disconnected(self.client)
        except Exception:
            log.exception("client %s: error while leaving", self.name)
        finally:
            self._closing = True
            with self._mutex:
                # Let the writer put our close frame on the wire, within bounds.
                self._lock.wait_for(lambda: not self._writing, CLOSE_HANDSHAKE_TIMEOUT)
                self._outbox.discard()
                self._lock.notify_all()
            self._transport.forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    # -- handshake ----------------------------------------------------------

    def _handshake(self) -> Optional[bytes]:
        """Answer the opening request: the bytes after it once upgraded, or None when answered over HTTP."""
        transport = self._transport
        buffer = bytearray()
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise _Closed()
                line_was_in = b"\n" in buffer
                buffer += chunk
                if not line_was_in and b"\n" in buffer:
                    transport.request_line_arrived(self.sock)
                head = split_head(buffer)
                if head is not None:
                    break
            lines, rest = head
            request = parse_request(lines)
            if not request.is_upgrade:
                transport.policy.check_host(request)
                transport.answer_http(self.sock, request)
                return None
            transport.policy.check_websocket(request)
            self.client = ConnectedClient(self, self.address, request.path, request.query, request.headers)
            self.client.protocol = chosen_protocol(request)
            transport.admit(self)
        except HandshakeError as exc:
            log.warning("refused handshake from %s: %d %s", self.address, exc.status, exc.reason)
            self._send_quietly(http_response(exc.status, extra_headers=exc.headers))
            self.client = None
            return None
        # Nagle's algorithm and delayed ACKs would add about 40 ms to every two-frame reply.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(switching_protocols(request))
        if self.client.protocol >= 3:
            # Before anything else can be sent: the client is not in the registry yet.
            self.sock.sendall(text_frame(hello_message(transport.config)))
        return bytes(rest)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    # -- reading ------------------------------------------------------------

    def _read_loop(self, rest: bytes) -> None:
        parser = FrameParser(self._transport.config.max_message_size, binary=self.client.protocol >= 3)
        received = self._transport.receiver.received
        events = parser.feed(rest)
        size = _RECV_IDLE
        while True:
            for event in events:
                if type(event) is TextMessage:  # the usual event, without the questions below
                    if not self._closing:
                        self.spoke = True
                        received(self.client, event.text)
                elif not self._on_event(event):
                    return
            # Dropped before waiting: a large message is not held while the handler runs.
            events = event = None
            # recv(n) holds n bytes while it waits: an idle connection waits
            # with a small buffer, a busy one (its last read filled the
            # buffer, or a large frame is due) reads up to 1 MiB at a time.
            data = self.sock.recv(min(max(size, parser.wanted), _RECV_MAX))
            if not data:
                raise _Closed()
            size = min(size * 4, _RECV_MAX) if len(data) >= size else _RECV_IDLE
            events = parser.feed(data)
            # Pings alone do not show the peer is alive: one that only pings
            # and never reads would keep the idle timer from ever sending our
            # ping, which it could not answer. (No event: part of a frame.)
            if not events or type(events[0]) is not Ping or not all(type(e) is Ping for e in events):
                self.last_seen = time.monotonic()
                self.ping_sent = None

    def _on_event(self, event: Event) -> bool:
        """Act on one event other than a text message; False when the connection is done reading."""
        if isinstance(event, FrameError):
            raise event
        if isinstance(event, Ping):
            self._send_pong(build_frame(OP_PONG, event.payload))
        elif isinstance(event, BinaryMessage) and not self._closing:
            self.spoke = True
            self._transport.receiver.received_binary(self.client, event.payload)
        elif isinstance(event, Close):
            self.close(CLOSE_NORMAL if event.code is None else event.code, "")
            return False
        return True

    def _drain(self) -> None:
        """Read until the peer closes, so it gets our close frame, not a reset."""
        try:
            self.sock.settimeout(CLOSE_HANDSHAKE_TIMEOUT)
            deadline = time.monotonic() + CLOSE_HANDSHAKE_TIMEOUT
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass

    # -- writing ------------------------------------------------------------

    def send_frame(self, frame: Frame, wait: Optional[bool] = True, abandon: Optional[threading.Event] = None,
                   batch: bool = False) -> Optional[bool]:
        """Write one data frame, or queue it; False if it was not accepted.

        With ``batch`` the frame is queued even when it could be written at
        once, for the writer thread to send with its neighbours in one system
        call: a sender in a burst (a handler streaming, a process
        broadcasting) costs one write per batch rather than one per frame.

        A full backlog means the client is not reading. A waiting sender gets
        up to ``send_timeout`` seconds of back-pressure, giving up early when
        the connection closes or ``abandon`` is set; a non-waiting sender gets
        none. Then the client is disconnected as a slow consumer. With
        ``wait=None`` (an async handler's first try) a full backlog returns
        None and nothing is sent or decided.
        """
        deadline: Optional[float] = None
        with self._mutex:
            while True:
                if self._closing or (abandon is not None and abandon.is_set()):
                    return False
                if not self._writing and not batch:
                    return self._write_through(frame)
                if self._outbox.has_room(frame):
                    self._outbox.append(frame)
                    self._wake_writer(lingering=not batch)
                    return True
                if not wait:
                    if wait is None:
                        return None  # it would have to wait: the caller tries again where it can
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._send_timeout
                if now >= deadline:
                    break
                self._lock.wait(min(_SLICE, deadline - now))
        self._slow_consumer()
        return False

    def send_ping(self) -> None:
        self.ping_sent = time.monotonic()
        with self._mutex:
            if self._closing:
                return
            if self._writing:
                self._outbox.append(build_frame(OP_PING, b"igor"))
                self._wake_writer(lingering=True)
            else:
                self._write_through(build_frame(OP_PING, b"igor"))

    def _send_pong(self, frame: bytes) -> None:
        with self._mutex:
            if self._closing:
                return
            if self._writing:
                self._outbox.replace_pong(frame)
            else:
                self._write_through(frame)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame after what is queued, then end the connection. Never blocks."""
        with self._mutex:
            if self._closing:
                return
            self._closing = True
            self.closing_since = time.monotonic()
            frame = build_close(code, reason)
            self._lock.notify_all()  # senders waiting for room give up
            if self._writing:
                self._outbox.close_frame = frame
                return
            try:
                sent = self.sock.send(frame, _DONTWAIT) if _DONTWAIT else 0
            except OSError:
                sent = 0
            if sent == len(frame):
                self._shutdown_write()
            else:
                self._outbox.close_frame = frame[sent:]
                self._start_writer()

    def abort(self) -> None:
        """Cut the connection at once; the reader thread then ends it."""
        with self._mutex:
            self._closing = True
            if self.closing_since is None:
                self.closing_since = time.monotonic()
            self._lock.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_through(self, frame: Frame) -> bool:
        # Called with the lock held and no writer: the socket's write side is ours.
        try:
            if not _DONTWAIT:
                sent = 0
            elif type(frame) is bytes:
                sent = self.sock.send(frame, _DONTWAIT)
            else:
                sent = self.sock.sendmsg(frame, (), _DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._closing = True
            return False
        if sent < frame_size(frame):
            self._outbox.append_unsent(frame, sent)
            self._wake_writer()
        return True

    def _wake_writer(self, lingering: bool = False) -> None:
        # Lock held, something queued. A frame not sent in a burst must not wait out an idle writer's linger.
        if lingering and self._writing:
            self._lock.notify_all()
        elif not self._writing:
            self._progress = time.monotonic()
            self._start_writer()

    def _start_writer(self) -> None:
        if not self._writing:
            self._writing = True
            threading.Thread(target=self._write_loop, name="igor-writer", daemon=True).start()

    def _write_loop(self) -> None:
        lingered = False
        while True:
            with self._mutex:
                if self._outbox.is_empty() and not lingered and not self._closing:
                    # A burst tends to go on: wait for more rather than start a thread for every push.
                    self._lock.wait(_LINGER)
                    lingered = True
                batch, closing = self._outbox.take()
                if not batch:
                    self._writing = False
                    self._lock.notify_all()
                    return
                self._lock.notify_all()  # room for waiting senders
            lingered = False
            try:
                self._send_all(batch)
                if closing:
                    self._shutdown_write()
            except OSError:
                self.abort()
                with self._mutex:
                    self._writing = False
                    self._outbox.discard()
                    self._lock.notify_all()
                return

    def _send_all(self, chunks: List[Chunk]) -> None:
        # sendmsg gathers the frames where they lie: joining them first would
        # copy a broadcast's shared frame once per client that has it queued.
        if not hasattr(self.sock, "sendmsg"):
            chunks = [b"".join(chunks)]
        views = [memoryview(chunk) for chunk in chunks]
        first = 0
        while first < len(views):
            sent = self.sock.sendmsg(views[first:first + _IOV_MAX]) if len(views) > 1 else self.sock.send(views[0])
            self._progress = time.monotonic()
            while sent:
                if sent >= len(views[first]):
                    sent -= len(views[first])
                    first += 1
                else:
                    views[first] = views[first][sent:]
                    sent = 0

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _slow_consumer(self) -> None:
        log.warning("client %s reads too slowly; disconnecting it", self.name)
        with self._mutex:
            self._outbox.free()  # it will not be read: see Outbox.free
        self.close(CLOSE_POLICY_VIOLATION, "client reads too slowly")

    # -- the heartbeat's visit ------------------------------------------------

    def tick(self, now: float, ping_interval: Optional[float], ping_timeout: float) -> None:
        """Called about twice a second: pings, dead peers, stuck backlogs, stuck closes."""
        if self.closing_since is not None:
            if now - self.closing_since > 2 * CLOSE_HANDSHAKE_TIMEOUT:
                self.abort()
            return
        if self._writing and now - self._progress > self._send_timeout:
            # Whatever is queued (data, a ping's pong) has not moved: the peer is not reading.
            self._slow_consumer()
            return
        if ping_interval is None or self.client is None:
            return
        if self.ping_sent is not None:
            if now - self.ping_sent > ping_timeout:
                log.warning("client %s did not answer a ping within %ss; dropping it", self.name, ping_timeout)
                self.abort()
        elif now - self.last_seen > ping_interval:
            self.send_ping()

