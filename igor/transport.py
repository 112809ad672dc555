"""The listening side: Igor's subclass of websocket-server's server and handler.

websocket-server (Pithikos) gives a TCP server with a thread per connection.
Igor keeps that shape and replaces what is unsafe in it: its handler's
``handle`` runs an :class:`~igor.connection.Connection` (whole frames written
without interleaving, payloads unmasked in C, fragments reassembled by a
sans-I/O parser, binary frames read and refused, handshake headers kept and
checked), and its server admits connections under bounds:

- connections still in their opening handshake live in a capped table; the
  request line must arrive within ``REQUEST_LINE_TIMEOUT`` and the whole head
  within ``handshake_timeout``; a full table evicts its oldest, slowest member
  rather than refusing the newcomer, so a crowd of slow sockets cannot lock
  out a legitimate client that completes its handshake in a millisecond;
- upgraded connections are capped by ``max_clients``;
- a plain HTTP request (a static file, a signed file URL) is answered while
  it counts as a pending handshake; once a file's bytes start to flow it
  leaves that table for one of file answers in flight, also capped by
  ``max_clients`` (503 beyond), and a peer that stops reading for
  ``send_timeout`` seconds is cut off, so no answer holds its thread for long.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from . import static
from .config import Config
from .connection import Connection, Receiver
from .file_urls import FileUrls
from .frames import CLOSE_GOING_AWAY
from .handshake import HandshakeError, Request, SecurityPolicy

_root = logging.getLogger()
_root_had_handlers = bool(_root.handlers)
import websocket_server  # noqa: E402

# websocket-server calls logging.basicConfig() when imported; a library must
# leave the root logger to the application, so undo that side effect.
if not _root_had_handlers:
    for _handler in list(_root.handlers):
        _root.removeHandler(_handler)

__all__ = ["IgorTransport", "IgorHandler", "MAX_PENDING_HANDSHAKES", "REQUEST_LINE_TIMEOUT"]

log = logging.getLogger("igor")

#: Connections that may be in their opening handshake at once (or ``max_clients``, if larger).
MAX_PENDING_HANDSHAKES = 64
#: Seconds from accept to the end of the request line: a real client sends it at once.
REQUEST_LINE_TIMEOUT = 2.0
#: Seconds a connection that has sent no message is safe from eviction by a newcomer to a full server.
IDLE_GRACE = 1.0
CLOSE_TRY_AGAIN_LATER = 1013


class IgorHandler(websocket_server.WebSocketHandler):
    """websocket-server's per-connection handler, serving one :class:`Connection`."""

    server: IgorTransport

    def setup(self) -> None:
        # The stock setup wraps the socket in buffered files we never use: the
        # connection reads the socket itself, so no byte sits in a buffer it cannot see.
        self.connection_ = Connection(self.request, self.client_address, self.server)

    def handle(self) -> None:
        self.connection_.run()

    def finish(self) -> None:
        pass


class _Pending:
    __slots__ = ("started", "line_seen")

    def __init__(self, started: float):
        self.started = started
        self.line_seen = False


class IgorTransport(websocket_server.WebsocketServer):
    """websocket-server's threaded TCP server, admitting connections under Igor's bounds."""

    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, config: Config, policy: SecurityPolicy, receiver: Receiver,
                 sock: Optional[socket.socket] = None):
        self.config = config
        self._inherited = sock
        self.policy = policy
        self.receiver = receiver
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self._lock = threading.Condition()
        self._connections: List[Connection] = []
        self._pending: Dict[socket.socket, _Pending] = {}
        self._transfers: Set[socket.socket] = set()
        #: The signed file URLs this server answers (see :meth:`igor.IgorServer.file_url`).
        self.files: Optional[FileUrls] = None
        self._closing = False
        super().__init__(host=config.host, port=config.port, loglevel=logging.getLogger("igor").getEffectiveLevel())
        self.RequestHandlerClass = IgorHandler

    def server_bind(self) -> None:
        if self._inherited is None:
            super().server_bind()
            return
        # A socket that listens already, bound by a supervisor (igor dev) that hands it to each backend it
        # starts: the port never changes, and a connect while backends change places waits in its backlog.
        self.socket.close()
        self.socket = self._inherited
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        if self._inherited is None:
            super().server_activate()

    # -- admission (the accepting thread, then each connection's thread) -------

    def verify_request(self, request: socket.socket, client_address: Any) -> bool:
        """Runs on the accepting thread: take the newcomer in, evicting the worst pending one if full."""
        evicted = None
        with self._lock:
            if self._closing:
                _shutdown(request)
                request.close()
                return False
            if len(self._pending) >= max(MAX_PENDING_HANDSHAKES, self.config.max_clients):
                evicted = self._slowest_pending()
                del self._pending[evicted]
            self._pending[request] = _Pending(time.monotonic())
        if evicted is not None:
            log.warning("too many pending handshakes: dropping the slowest, from %s", _peer(evicted))
            _shutdown(evicted)
        return True

    def _slowest_pending(self) -> socket.socket:
        """The pending handshake to drop for a newcomer (called with the lock held).

        The oldest of those that have not sent their request line, else the
        oldest; but one whose bytes are waiting in the kernel is only not yet
        read (its thread has not run), not slow, and is passed over if any other can go.
        """
        ranked = sorted(self._pending, key=lambda s: (self._pending[s].line_seen, self._pending[s].started))
        if not hasattr(socket, "MSG_DONTWAIT"):
            return ranked[0]  # no peeking without blocking on this platform
        for sock in ranked[:8]:
            try:
                waiting = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return sock
            except OSError:
                return sock  # broken already
            if not waiting:
                return sock  # closed by its peer
        return ranked[0]

    def request_line_arrived(self, sock: socket.socket) -> None:
        with self._lock:
            pending = self._pending.get(sock)
            if pending is not None:
                pending.line_seen = True

    def answer_http(self, sock: socket.socket, request: Request) -> None:
        """Answer a plain HTTP request whose Host has been checked: a file URL, a static file, or 404."""
        if self.files is not None and self.files.owns(request):
            answer = self.files.answer(request, self.policy)
        else:
            answer = static.respond(self.config.static_dir, request)
        log.info("HTTP %s %s -> %d", request.method, request.path, answer.status)
        if answer.file is None:
            static.send_answer(sock, answer)
            return
        with self._lock:
            full = self._closing or len(self._transfers) >= self.config.max_clients
            if not full:
                self._pending.pop(sock, None)  # no longer a handshake: the send timeout bounds it now
                self._transfers.add(sock)
        if full:
            answer.close()
            raise HandshakeError(503, "too many file answers in flight")
        try:
            sock.settimeout(self.config.send_timeout)
            static.send_answer(sock, answer)
        finally:
            with self._lock:
                self._transfers.discard(sock)

    def admit(self, connection: Connection) -> None:
        """Count an upgraded connection in, or raise the HTTP refusal."""
        with self._lock:
            if self._closing:
                raise HandshakeError(503, "the server is shutting down")
            if self._pending.pop(connection.sock, None) is None:
                raise HandshakeError(503, "the handshake took too long")
            evicted = None
            if len(self._connections) >= self.config.max_clients:
                evicted = self._idlest(time.monotonic())
                if evicted is None:
                    raise HandshakeError(503, "max_clients reached")
                self._connections.remove(evicted)
            connection.admitted_at = time.monotonic()
            self._connections.append(connection)
        if evicted is not None:
            log.warning("max_clients reached: evicting client %s, which has sent nothing in %.1fs, for a newcomer",
                        evicted.name, connection.admitted_at - evicted.admitted_at)
            evicted.close(CLOSE_TRY_AGAIN_LATER, "server full: evicted for sending nothing")

    def _idlest(self, now: float) -> Optional[Connection]:
        """The connection a newcomer may take the place of: the oldest that never sent a message.

        Called with the lock held. Without it, a full ``max_clients`` of
        connections that only answer pings (nothing else costs them anything)
        would lock the app's own window out; a connection that has said
        something is never evicted.
        """
        silent = [c for c in self._connections if not c.spoke and now - c.admitted_at > IDLE_GRACE]
        return min(silent, key=lambda c: c.admitted_at) if silent else None

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self._pending.pop(connection.sock, None)
            if connection in self._connections:
                self._connections.remove(connection)
            self._lock.notify_all()

    # -- the heartbeat's visit ------------------------------------------------

    def tick(self) -> None:
        """Expire slow handshakes; let each connection ping, detect dead peers and slow consumers."""
        now = time.monotonic()
        config = self.config
        with self._lock:
            late = [sock for sock, pending in self._pending.items()
                    if now - pending.started > (config.handshake_timeout if pending.line_seen
                                                else min(REQUEST_LINE_TIMEOUT, config.handshake_timeout))]
            for sock in late:
                del self._pending[sock]
        for sock in late:
            log.warning("handshake from %s took too long; dropping it", _peer(sock))
            _shutdown(sock)
        for connection in self.connections():
            try:
                connection.tick(now, config.ping_interval, config.ping_timeout)
            except Exception:
                log.exception("client %s: error in the heartbeat", connection.name)

    # -- the whole server -----------------------------------------------------

    def connections(self) -> List[Connection]:
        with self._lock:
            return list(self._connections)

    def counts(self) -> Tuple[int, int]:
        """``(pending handshakes, connections)``."""
        with self._lock:
            return len(self._pending), len(self._connections)

    def file_answers(self) -> int:
        """Plain HTTP answers whose file is being sent."""
        with self._lock:
            return len(self._transfers)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every connection and admit no new one."""
        with self._lock:
            self._closing = True
            pending = list(self._pending) + list(self._transfers)
            self._pending.clear()
        for sock in pending:
            _shutdown(sock)
        for connection in self.connections():
            connection.close(code, reason)

    def wait_until_empty(self, timeout: float) -> bool:
        """Wait until every connection has ended; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._connections, timeout)

    def abort_all(self) -> None:
        for connection in self.connections():
            connection.abort()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("unexpected error with connection %s", client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        # The connection closes its own socket; the stock version would do it a second time.
        with self._lock:
            self._pending.pop(request, None)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return "?"

