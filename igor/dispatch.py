"""Dispatch: what each client's messages mean, and the streams they open.

The :class:`Dispatcher` alone owns every client's stream table. Connections
talk to it through three calls (:meth:`~Dispatcher.connected`,
:meth:`~Dispatcher.received`, :meth:`~Dispatcher.disconnected`), and it talks
back through :class:`~igor.registry.ConnectedClient` (send a frame, close), so neither
side reaches into the other. It decides whether each call may run and has
:class:`~igor.runner.HandlerRunner` run its handler on the worker pool
(several streams of one client stay concurrent), or an ``async def`` one as a
task on the event loop every async handler shares; it routes input into open
calls and process inboxes, and carries the server's own calls to clients.
What it keeps for each client is a :class:`~igor.peer.Peer`.

What holds, after any sequence of messages (the invariants docs/protocol.md
states, and test_bounds.py's adversary checks):

- a client has at most ``max_streams`` handlers whose code still runs,
  cancelled ones included, and at most ``max_streams`` threads (its sync
  handlers and its async handlers' ``to_thread`` work); all clients together
  at most ``max_workers`` threads;
- what a client's messages hold once parsed (call data of running handlers,
  unread input, unread process messages) stays within ``max_client_memory``,
  counted before parsing by :func:`~igor.protocol.parsed_cost`;
- a client's mistakes are logged cut short, and at most a few per window.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from .api import Handler
from .binary import unpack
from .config import CALL_TIMEOUT, Config
from .encoding import MessageEncoder, make_encoder
from .exceptions import (
    BinaryUnsupported,
    CallTimeout,
    ConfigError,
    ConnectionClosed,
    IgorError,
    InboxFull,
    OverBudget,
    ProtocolError,
    RemoteError,
    StreamClosed,
    StreamIdInUse,
    TooManyStreams,
    UnknownAction,
    UnknownCall,
    UnknownClient,
    UnknownStream,
)
from .executor import EventLoop, WorkerPool
from .frames import text_frame
from .peer import Peer, PendingCall
from .protocol import (
    Call,
    Cancel,
    EndInput,
    Input,
    ProcessInput,
    Reply,
    binary_cost,
    call_cancel_message,
    call_message,
    close_message,
    data_message,
    error_message,
    is_valid_id,
    parse_message,
    parse_object,
    parsed_cost,
    short,
    sniff_target,
)
from .registry import ClientId, ClientRegistry, ConnectedClient
from .runner import HandlerRunner
from .stream import Stream

if TYPE_CHECKING:
    from .process import Processes

__all__ = ["Dispatcher"]

log = logging.getLogger("igor")

INTRODUCE = "introduce_self"


class Dispatcher:
    """Routes every client message; owns streams and the server's calls to clients."""

    def __init__(self, api: Mapping[str, Callable], config: Config, registry: ClientRegistry,
                 processes: Processes, scope: Dict[str, Any], server: Any, on_exit: Callable[[int], None],
                 encode: Optional[MessageEncoder] = None):
        api = dict(api)
        if INTRODUCE in api:
            raise ConfigError(f"{INTRODUCE!r} is a built-in action and cannot be replaced")
        self.handlers = {name: Handler(name, function) for name, function in api.items()}
        self.config = config
        self.registry = registry
        self.encode = encode or make_encoder(config.json_default)
        self._processes = processes
        self._pool = WorkerPool(config.max_workers, config.worker_idle_timeout)
        self._loop = EventLoop(self._pool, lambda: TooManyStreams(
            f"the client has {config.max_streams} threads working for it, the most max_streams allows"))
        self._runner = HandlerRunner(self._pool, self._loop, scope, server, on_exit)
        self._lock = threading.Lock()
        self._peers: Dict[ConnectedClient, Peer] = {}

    # -- the connection's side ------------------------------------------------

    def connected(self, client: ConnectedClient) -> None:
        peer = Peer(self.config.max_streams)
        with self._lock:
            self._peers[client] = peer
        self.registry.add(client)
        log.info("client %r connected from %s", client.id, client.address)

    def disconnected(self, client: ConnectedClient) -> None:
        with self._lock:
            peer = self._peers.pop(client, None)
        self.registry.remove(client)
        if peer is None:
            return
        self._cancel_streams(peer)
        self._pool.drop(peer)  # its calls still waiting for a worker: they will not run now
        self._processes.forget(client)
        with peer.lock:
            calls = list(peer.calls.values())
            peer.calls.clear()
        for call in calls:
            call.error = ConnectionClosed(f"client {client.id!r} disconnected before answering")
            call.done.set()
        if peer.untold:
            log.warning("client %r: %d more mistakes were not logged", client.id, peer.untold)
        log.info("client %r left", client.id)

    def received(self, client: ConnectedClient, text: str) -> None:
        self._handle(client, text, parsed_cost(text), parse_message)

    def received_binary(self, client: ConnectedClient, payload: Any) -> None:
        """A protocol 3 binary message: its head and values (see igor.binary), parsed like a text one."""
        self._handle(client, payload, binary_cost(payload), _parse_binary)

    def _handle(self, client: ConnectedClient, raw: Any, cost: int, parse: Callable[[Any], Any]) -> None:
        peer = self._peer(client)
        if peer is None:
            return
        # Only this thread adds to `held`, so it can only shrink between this check and the charge.
        if peer.held + cost > self.config.max_client_memory:
            self._over_budget(client, peer, raw, cost)
            return
        try:
            message = parse(raw)
        except ProtocolError as exc:
            peer.complain(client, "sent a malformed message: %s", exc)
            with peer.lock:
                open_ = exc.stream_id in peer.streams
            # An error on a stream that is still open would end it: send that one untied.
            self._refuse(client, exc, None if open_ else exc.stream_id)
            return
        if isinstance(message, Call):
            self._call(client, peer, message, cost)
        elif isinstance(message, Cancel):
            stream = self._stream(peer, message.stream_id)
            if stream is not None:
                stream.cancel()
        elif isinstance(message, (Input, EndInput)):
            self._input(client, peer, message, cost)
        elif isinstance(message, ProcessInput):
            self._process_input(client, peer, message, cost)
        else:
            self._reply(client, peer, message)

    def _over_budget(self, client: ConnectedClient, peer: Peer, raw: Any, cost: int) -> None:
        """Refuse a message too costly to parse, tied to its stream when its first key names one."""
        error = OverBudget(f"a message that may hold {cost} bytes once parsed would take the client past "
                           f"max_client_memory ({self.config.max_client_memory} bytes, {peer.held} held now)")
        peer.complain(client, "%s", error)
        key, target = sniff_target(raw if isinstance(raw, str) else _head_text(raw))
        if key == "process":
            self._send(client, {"process": target, **error_message(error)})
            return
        stream = self._stream(peer, target) if key == "streamId" else None
        if stream is not None:
            stream.fail(InboxFull(f"stream {short(target)}: {error}"))  # input to an open call
        else:
            self._refuse(client, error, target)

    # -- calls ----------------------------------------------------------------

    def _call(self, client: ConnectedClient, peer: Peer, call: Call, cost: int) -> None:
        handler = self.handlers.get(call.action)
        limit = self.config.max_streams
        with peer.lock:
            if call.stream_id in peer.streams:
                error: Optional[IgorError] = StreamIdInUse(
                    f"streamId {short(call.stream_id)} names a stream that is still open")
            elif call.action == INTRODUCE:
                error = None
            elif handler is None:
                error = UnknownAction(f"unknown action {short(call.action)}")
            elif len(peer.running) >= limit or (not handler.is_async and peer.threads >= limit):
                error = TooManyStreams(f"the client has {len(peer.running)} handlers still running and "
                                       f"{peer.threads} threads (cancelled calls count until their handler "
                                       f"returns); max_streams allows {limit}")
            else:
                error = None
                stream = Stream(client, call.stream_id, self.encode, lambda s: self._forget(peer, s),
                                peer.give, debug=self.config.debug)
                peer.streams[call.stream_id] = stream
                peer.running[stream] = (f"action {short(call.action)} of client {short(client.id)}",
                                        handler.is_async)
                peer.held += cost
                if not handler.is_async:
                    peer.threads += 1
        if isinstance(error, StreamIdInUse):
            peer.complain(client, "reused open stream id %s", short(call.stream_id))
            # Answered untied, so the stream that holds the id is left alone.
            self._refuse(client, error, None)
            return
        if error is not None:
            peer.complain(client, "%s", error)
            self._refuse(client, error, call.stream_id)
            return
        if call.action == INTRODUCE:
            self._introduce(client, peer, call)
            return
        self._runner.run(client, peer, stream, handler, call, cost)

    def _introduce(self, client: ConnectedClient, peer: Peer, call: Call) -> None:
        data = call.data
        new_id = data.get("client_id") if isinstance(data, dict) else None
        if not is_valid_id(new_id):
            self._refuse(client, ProtocolError("introduce_self needs data {\"client_id\": <string of at most "
                                               "256 characters, or integer>}"), call.stream_id)
            return
        old_id = client.id
        resume = data.get("resume")
        try:
            secret = self.registry.rename(client, new_id, resume if isinstance(resume, str) else None)
        except IgorError as exc:
            peer.complain(client, "%s", exc)
            self._refuse(client, exc, call.stream_id)
            return
        log.info("client %r is now %r", old_id, new_id)
        self._send(client, data_message(call.stream_id, {"client_id": new_id, "resume": secret}))
        self._send(client, close_message(call.stream_id))

    # -- input ----------------------------------------------------------------

    def _input(self, client: ConnectedClient, peer: Peer, message: Any, cost: int) -> None:
        stream = self._stream(peer, message.stream_id)
        if stream is None or not stream.accepts_input:
            self._not_open_for_input(client, peer, message.stream_id)
            return
        if isinstance(message, EndInput):
            stream._end_input()
            return
        with peer.lock:
            peer.held += cost
        try:
            fed = stream._feed(message.data, cost, self.config.inbox_size)
        except StreamClosed:
            peer.give(cost)
            self._not_open_for_input(client, peer, message.stream_id)
            return
        if not fed:
            peer.give(cost)
            peer.complain(client, "flooded stream %s with input its handler does not read",
                           short(message.stream_id))
            stream.fail(InboxFull(f"stream {short(message.stream_id)} has {self.config.inbox_size} unread "
                                  f"inputs, as many as inbox_size allows"))

    def _not_open_for_input(self, client: ConnectedClient, peer: Peer, stream_id: Any) -> None:
        peer.complain(client, "sent input to stream %s, which is not open", short(stream_id))
        # Untied: the id may already name the client's next call.
        self._refuse(client, UnknownStream(f"stream {short(stream_id)} is not open for input"), None)

    def _process_input(self, client: ConnectedClient, peer: Peer, message: ProcessInput, cost: int) -> None:
        with peer.lock:
            peer.held += cost
        error = self._processes.deliver(client, message.process_id, message.data, cost, peer.give)
        if error is None:
            return
        peer.give(cost)
        peer.complain(client, "%s", error)
        self._send(client, {"process": message.process_id, **error_message(error)})

    # -- the server's calls to clients ---------------------------------------

    def call_client(self, client_id: ClientId, action: str, data: Any = None,
                    timeout: Optional[float] = CALL_TIMEOUT) -> Any:
        """Call the function ``action`` the client ``client_id`` exposed, and return its answer."""
        client = self.registry.get(client_id)
        peer = self._peer(client)
        if peer is None:
            raise UnknownClient(f"no connected client has id {client_id!r}")
        call_id = next(peer.call_ids)
        try:
            frame = text_frame(self.encode(call_message(call_id, action, data), client.protocol))
        except BinaryUnsupported as exc:
            raise BinaryUnsupported(f"call_client({action!r}): {exc}") from None
        except ValueError as exc:
            # Before anything is registered: a call that cannot be sent leaves nothing behind.
            raise TypeError(f"call_client({action!r}): {exc}") from None
        pending = PendingCall()
        with peer.lock:
            peer.calls[call_id] = pending
        if not client.send(frame, True):
            with peer.lock:
                peer.calls.pop(call_id, None)
            raise ConnectionClosed(f"client {client_id!r} is gone")
        if not pending.done.wait(timeout):
            with peer.lock:
                gone = peer.calls.pop(call_id, None) is not None
            if gone:
                self._send(client, call_cancel_message(call_id))
                raise CallTimeout(f"client {client_id!r} did not answer {action!r} within {timeout}s")
        if pending.error is not None:
            raise pending.error
        reply = pending.reply
        if reply.error is None:
            return reply.data
        if reply.code == 404 and reply.type == "UnknownAction":
            raise UnknownAction(f"client {client_id!r} exposes no function {action!r}: {reply.error}")
        raise RemoteError(reply.error, reply.code, reply.type, data=reply.data)

    def _reply(self, client: ConnectedClient, peer: Peer, reply: Reply) -> None:
        with peer.lock:
            pending = peer.calls.pop(reply.call_id, None)
        if pending is None:
            peer.complain(client, "answered callId %s, which names no pending call", reply.call_id)
            self._refuse(client, UnknownCall(f"callId {reply.call_id} names no pending call"), None)
            return
        pending.reply = reply
        pending.done.set()

    # -- the server's side ----------------------------------------------------

    def cancel_all(self) -> None:
        """Cancel every open stream (at shutdown)."""
        with self._lock:
            peers = list(self._peers.values())
        for peer in peers:
            self._cancel_streams(peer)

    def owns_thread(self, thread: threading.Thread) -> bool:
        return self._pool.owns(thread) or self._loop.owns(thread)

    def start(self) -> None:
        self._pool.start()

    def tick(self, now: float) -> None:
        """The heartbeat's visit: name an async handler that blocks the loop."""
        self._loop.check(now)

    def stop(self, deadline: float) -> List[str]:
        """Stop the workers and the loop by ``deadline``; returns the handlers abandoned still running."""
        return self._pool.stop(deadline) + self._loop.stop(deadline)

    def threads(self) -> int:
        """Threads the pool holds now (busy and idle)."""
        return self._pool.threads()

    def held(self) -> int:
        """The parsed cost of what connected clients' messages hold now (see max_client_memory)."""
        with self._lock:
            peers = list(self._peers.values())
        return sum(peer.held for peer in peers)

    def busy_threads(self) -> int:
        return self._pool.busy()

    def open_streams(self, client: ConnectedClient) -> int:
        peer = self._peer(client)
        if peer is None:
            return 0
        with peer.lock:
            return len(peer.streams)

    # -- helpers ----------------------------------------------------------------

    def _peer(self, client: ConnectedClient) -> Optional[Peer]:
        with self._lock:
            return self._peers.get(client)

    @staticmethod
    def _stream(peer: Peer, stream_id: Any) -> Optional[Stream]:
        with peer.lock:
            return peer.streams.get(stream_id)

    @staticmethod
    def _forget(peer: Peer, stream: Stream) -> None:
        with peer.lock:
            if peer.streams.get(stream.stream_id) is stream:
                del peer.streams[stream.stream_id]

    @staticmethod
    def _cancel_streams(peer: Peer) -> None:
        with peer.lock:
            streams = list(peer.streams.values())
        for stream in streams:
            stream.cancel()

    def _send(self, client: ConnectedClient, message: dict, wait: bool = False) -> bool:
        # wait=False on the reader thread: never wait for a client that does not read.
        return client.send(text_frame(self.encode.for_client(message, client.protocol)), wait)

    def _refuse(self, client: ConnectedClient, error: IgorError, stream_id: Any) -> None:
        self._send(client, error_message(error, stream_id))
        if stream_id is not None:
            self._send(client, close_message(stream_id))


def _parse_binary(payload: Any) -> Any:
    return parse_object(unpack(payload))


def _head_text(payload: Any) -> str:
    """The start of a binary message's head, for sniff_target: the head is JSON too."""
    return str(payload[4:404], "utf-8", "replace")
