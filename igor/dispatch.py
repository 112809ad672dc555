"""Dispatch: what each client's messages mean, and the streams they open.

The :class:`Dispatcher` alone owns every client's stream table. Connections
talk to it through three calls (:meth:`~Dispatcher.connected`,
:meth:`~Dispatcher.received`, :meth:`~Dispatcher.disconnected`), and it talks
back through :class:`~igor.registry.Client` (send a frame, close), so neither
side reaches into the other. It runs each call's handler on a worker thread
(several streams of one client stay concurrent), or an ``async def`` one as a
task on the event loop every async handler shares, routes input into open
calls and process inboxes, and carries the server's own calls to clients.

Everything a client can make it hold is bounded per client: ``max_streams``
open calls (so at most that many worker threads), ``inbox_size`` unread
inputs per call and ``max_message_size`` bytes of unread input in all.
"""

from __future__ import annotations

# asyncio is imported where async handlers need it, not here: it adds about
# 8 MiB to every process, which an app with only sync handlers need not pay.
import concurrent.futures
import inspect
import itertools
import logging
import queue
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from .exceptions import (
    CallTimeout,
    ConfigError,
    ConnectionClosed,
    IgorError,
    InboxFull,
    ProtocolError,
    RemoteError,
    StreamCancelled,
    StreamClosed,
    StreamIdInUse,
    TooManyStreams,
    UnknownAction,
    UnknownCall,
    UnknownClient,
    UnknownProcess,
    UnknownStream,
)
from .frames import text_frame
from .protocol import (
    Call,
    Cancel,
    EndInput,
    Input,
    ProcessInput,
    Reply,
    call_cancel_message,
    call_message,
    close_message,
    data_message,
    error_message,
    is_valid_id,
    make_encoder,
    parse_message,
)
from .registry import Client, ClientId, ClientRegistry
from .stream import Stream

if TYPE_CHECKING:
    import asyncio

    from .config import Config

__all__ = ["Dispatcher", "Handler", "HANDLER_KEYWORDS"]

log = logging.getLogger("igor")

INTRODUCE = "introduce_self"
#: The keyword arguments a handler may declare.
HANDLER_KEYWORDS = frozenset({"session", "scope", "client_id", "stream_id", "server", "client"})

# What a handler usually returns: sent as its one value without asking the
# (slow, abc-based) questions a generator or a coroutine needs.
_PLAIN_RESULTS = frozenset({dict, list, str, int, float, bool, tuple})


def exit_code(code: Any) -> int:
    """``sys.exit(code)``'s code as a process exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    log.error("exit requested: %s", code)
    return 1


class Handler:
    """An action's function, checked once: which keyword arguments it takes, and how it runs."""

    def __init__(self, name: str, function: Callable):
        if isinstance(function, Mapping):
            raise ConfigError(f"action {name!r} is a dict, not a handler: nested APIs must go through "
                              f"igor.flatten(api) first")
        if not callable(function):
            raise ConfigError(f"action {name!r} is not callable: {function!r}")
        self.name = name
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        self.accepts: Optional[frozenset] = None
        # False for a plain handler(out, data): it is called without building any keywords.
        self.takes_keywords = True
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return  # a builtin without a signature: call it with everything
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
            raise ConfigError(f"handler {name!r} must take (out, data, ...), but its signature is "
                              f"{inspect.signature(function)}")
        for p in positional[2:] + [p for p in parameters if p.kind is p.KEYWORD_ONLY]:
            if p.default is p.empty and p.name not in HANDLER_KEYWORDS:
                raise ConfigError(f"handler {name!r} requires a parameter {p.name!r} that Igor cannot fill; "
                                  f"it passes only {', '.join(sorted(HANDLER_KEYWORDS))}")
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            self.accepts = frozenset(p.name for p in parameters
                                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)) & HANDLER_KEYWORDS
            self.takes_keywords = bool(self.accepts)

    def __call__(self, out: Stream, data: Any, kwargs: Dict[str, Any]) -> Any:
        if self.accepts is not None:
            kwargs = {key: value for key, value in kwargs.items() if key in self.accepts}
        return self.function(out, data, **kwargs)


class _WorkerPool:
    """Threads for handlers: an idle one takes the call, else a new one starts.

    No fixed size, so long streams never queue behind each other (the
    dispatcher's ``max_streams`` bounds them per client); idle threads are
    reused, and end after ``idle_timeout`` seconds without work, except
    ``keep`` of them, started with the server, so that a call after a quiet
    spell does not wait for a thread to start.
    """

    def __init__(self, idle_timeout: float, keep: int = 1):
        self.idle_timeout = idle_timeout
        self.keep = keep
        self._tasks: queue.SimpleQueue[Optional[Callable[[], None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: set = set()

    def start(self) -> None:
        """Start the ``keep`` workers that wait for calls from the first one on."""
        for _ in range(self.keep):
            with self._lock:
                self._idle += 1
            self._spawn(None)

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
        self._spawn(task)

    def _spawn(self, task: Optional[Callable[[], None]]) -> None:
        thread = threading.Thread(target=self._work, args=(task,), name="igor-worker", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _work(self, task: Optional[Callable[[], None]]) -> None:
        while True:
            if task is not None:
                task()
                task = None  # drop the finished call's references before waiting for the next
                with self._lock:
                    self._idle += 1
            task = self._next_task()
            if task is None:
                break
        with self._lock:
            self._threads.discard(threading.current_thread())

    def _next_task(self) -> Optional[Callable[[], None]]:
        """Wait for work as an idle worker; None once idle for too long (or stopped)."""
        while True:
            try:
                return self._tasks.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    # submit() counts on idle workers under this lock: leave
                    # only if it has not handed this worker a task meanwhile,
                    # and never below the workers kept.
                    if self._tasks.empty() and len(self._threads) > self.keep:
                        self._idle -= 1
                        self._threads.discard(threading.current_thread())
                        return None

    def owns(self, thread: threading.Thread) -> bool:
        with self._lock:
            return thread in self._threads

    def stop(self, timeout: float) -> None:
        """End idle workers now and wait up to ``timeout`` for busy ones."""
        with self._lock:
            for _ in range(self._idle):
                self._tasks.put(None)
            self._idle = 0
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))


class _EventLoop:
    """One asyncio loop on a thread of its own, started on the first ``async def`` call.

    Every async handler runs on it, so they interleave at their awaits. Its
    default executor (which ``asyncio.to_thread``, and so ``out.asend``, use)
    is not asyncio's usual one of ``cpus + 4`` threads: a few sends blocked on
    clients that do not read would take them all and stall every other async
    handler. Threads start only as needed and are bounded by how many streams
    could be open at once.
    """

    def __init__(self, max_threads: int) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._max_threads = max_threads

    def run(self, coroutine: Any) -> bool:
        """Schedule ``coroutine`` as a task; False (and it is closed) once the loop has stopped."""
        import asyncio

        with self._lock:
            if self._stopped:
                coroutine.close()
                return False
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
                    self._max_threads, thread_name_prefix="igor-async-io"))
                self._thread = threading.Thread(target=self._loop.run_forever, name="igor-asyncio", daemon=True)
                self._thread.start()
            asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            return True

    def owns(self, thread: threading.Thread) -> bool:
        return thread is self._thread

    def stop(self, timeout: float) -> None:
        """Cancel what still runs (a handler that ignored its cancel), then stop and close the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._stopped = True
        if loop is None:
            return
        import asyncio

        async def drain() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=timeout)
                if pending:
                    log.warning("%d async handlers did not end when cancelled at shutdown", len(pending))
            await loop.shutdown_asyncgens()
            # Threads blocked in a send end within send_timeout; do not wait that long here.
            await asyncio.wait({asyncio.ensure_future(loop.shutdown_default_executor())}, timeout=timeout)

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(3 * timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("async handlers did not stop within %ss", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


class _PendingCall:
    __slots__ = ("done", "reply", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None


class _Peer:
    """What the dispatcher keeps for one client: its open streams, unread input, calls waiting on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.streams: Dict[Any, Stream] = {}
        self.input_bytes = 0
        self.calls: Dict[int, _PendingCall] = {}
        self.call_ids = itertools.count(1)


class Dispatcher:
    """Routes every client message; owns streams, inboxes and the server's calls to clients."""

    def __init__(self, api: Mapping[str, Callable], config: Config, registry: ClientRegistry,
                 processes: Mapping[str, threading.Thread], scope: Dict[str, Any],
                 server: Any, on_exit: Callable[[int], None]):
        api = dict(api)
        if INTRODUCE in api:
            raise ConfigError(f"{INTRODUCE!r} is a built-in action and cannot be replaced")
        self.handlers = {name: Handler(name, function) for name, function in api.items()}
        self.config = config
        self.registry = registry
        self.encode = make_encoder(config.json_default)
        self._processes = processes
        self._scope = scope
        self._server = server
        self._on_exit = on_exit
        self._pool = _WorkerPool(config.worker_idle_timeout)
        self._loop = _EventLoop(config.max_clients * config.max_streams)
        self._lock = threading.Lock()
        self._peers: Dict[Client, _Peer] = {}

    # -- the connection's side ------------------------------------------------

    def connected(self, client: Client) -> None:
        with self._lock:
            self._peers[client] = _Peer()
        self.registry.add(client)
        log.info("client %r connected from %s", client.id, client.address)

    def disconnected(self, client: Client) -> None:
        with self._lock:
            peer = self._peers.pop(client, None)
        self.registry.remove(client)
        if peer is None:
            return
        self._cancel_streams(peer)
        with peer.lock:
            calls = list(peer.calls.values())
            peer.calls.clear()
        for call in calls:
            call.error = ConnectionClosed(f"client {client.id!r} disconnected before answering")
            call.done.set()
        log.info("client %r left", client.id)

    def received(self, client: Client, text: str) -> None:
        peer = self._peer(client)
        if peer is None:
            return
        try:
            message = parse_message(text)
        except ProtocolError as exc:
            log.warning("client %r sent a malformed message: %s", client.id, exc)
            with peer.lock:
                open_ = exc.stream_id in peer.streams
            # An error on a stream that is still open would end it: send that one untied.
            self._refuse(client, exc, None if open_ else exc.stream_id)
            return
        if isinstance(message, Call):
            self._call(client, peer, message)
        elif isinstance(message, Cancel):
            stream = self._stream(peer, message.stream_id)
            if stream is not None:
                stream.cancel()
        elif isinstance(message, (Input, EndInput)):
            self._input(client, peer, message, len(text))
        elif isinstance(message, ProcessInput):
            self._process_input(client, message)
        else:
            self._reply(client, peer, message)

    # -- calls ----------------------------------------------------------------

    def _call(self, client: Client, peer: _Peer, call: Call) -> None:
        handler = self.handlers.get(call.action)
        with peer.lock:
            if call.stream_id in peer.streams:
                error: Optional[IgorError] = StreamIdInUse(
                    f"streamId {call.stream_id!r} names a stream that is still open")
            elif call.action == INTRODUCE:
                error = None
            elif handler is None:
                error = UnknownAction(f"unknown action {call.action!r}")
            elif len(peer.streams) >= self.config.max_streams:
                error = TooManyStreams(f"client has {len(peer.streams)} open calls, the most max_streams allows")
            else:
                error = None
                stream = Stream(client, call.stream_id, self.encode, lambda s: self._forget(peer, s),
                                lambda size: self._consumed(peer, size), debug=self.config.debug)
                peer.streams[call.stream_id] = stream
        if isinstance(error, StreamIdInUse):
            log.warning("client %r reused open stream id %r", client.id, call.stream_id)
            # Answered untied, so the stream that holds the id is left alone.
            self._refuse(client, error, None)
            return
        if error is not None:
            log.warning("client %r: %s", client.id, error)
            self._refuse(client, error, call.stream_id)
            return
        if call.action == INTRODUCE:
            self._introduce(client, call)
            return
        if handler.is_async:
            self._run_async(client, stream, handler, call)
        else:
            self._pool.submit(lambda: self._run_call(client, stream, handler, call))

    def _kwargs(self, client: Client, call: Call) -> Dict[str, Any]:
        return {
            "session": client.session,
            "scope": self._scope,
            "client_id": client.id,
            "stream_id": call.stream_id,
            "server": self._server,
            "client": client,
        }

    def _run_call(self, client: Client, stream: Stream, handler: Handler, call: Call) -> None:
        try:
            if handler.takes_keywords:
                result = handler(stream, call.data, self._kwargs(client, call))
            else:
                result = handler.function(stream, call.data)
            if type(result) in _PLAIN_RESULTS:
                pass  # one value, sent below
            elif inspect.iscoroutine(result) or isinstance(result, AsyncGenerator):
                # A sync function that made one (a decorator without async def): run it on the loop all the same.
                self._run_async(client, stream, handler, call, result)
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

    def _run_async(self, client: Client, stream: Stream, handler: Handler, call: Call, made: Any = None) -> None:
        """Run an async handler as a task on the loop; ``made`` is its coroutine or generator if already called."""
        import asyncio

        async def run() -> None:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()

            def cancel() -> None:
                # From the connection's reader thread; the loop may already be closed at shutdown.
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass

            # A cancel (or the client leaving) cancels the task, which the handler sees at its next
            # await. Set before reading `cancelled`, so a cancel arriving meanwhile is seen one way or the other.
            stream._on_cancel = cancel
            if stream.cancelled:
                if inspect.iscoroutine(made):
                    made.close()  # it will not run: no "never awaited" warning
                return
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
                await asyncio.to_thread(self._handler_ended, stream, call, client, exc)

        if not self._loop.run(run()):
            stream.cancel()  # the server is shutting down
            if inspect.iscoroutine(made):
                made.close()

    def _handler_ended(self, stream: Stream, call: Call, client: Client, exc: BaseException) -> None:
        if isinstance(exc, StreamCancelled):
            log.debug("stream %r of client %r ended by cancel", call.stream_id, client.id)
        elif isinstance(exc, SystemExit):
            stream.close()
            log.info("action %r asked the program to exit", call.action)
            self._on_exit(exit_code(exc.code))
        elif isinstance(exc, StreamClosed) and stream.closed:
            log.error("action %r sent on its stream after closing it", call.action)
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

    def _introduce(self, client: Client, call: Call) -> None:
        data = call.data
        new_id = data.get("client_id") if isinstance(data, dict) else None
        if not is_valid_id(new_id):
            self._refuse(client, ProtocolError("introduce_self needs data {\"client_id\": <string or integer>}"),
                         call.stream_id)
            return
        old_id = client.id
        resume = data.get("resume")
        try:
            secret = self.registry.rename(client, new_id, resume if isinstance(resume, str) else None)
        except IgorError as exc:
            log.warning("client %r: %s", old_id, exc)
            self._refuse(client, exc, call.stream_id)
            return
        log.info("client %r is now %r", old_id, new_id)
        self._send(client, data_message(call.stream_id, {"client_id": new_id, "resume": secret}))
        self._send(client, close_message(call.stream_id))

    # -- input ----------------------------------------------------------------

    def _input(self, client: Client, peer: _Peer, message: Any, size: int) -> None:
        stream = self._stream(peer, message.stream_id)
        if stream is None or not stream.accepts_input:
            self._not_open_for_input(client, message.stream_id)
            return
        if isinstance(message, EndInput):
            stream._end_input()
            return
        with peer.lock:
            over_budget = peer.input_bytes + size > self.config.max_message_size
            if not over_budget:
                peer.input_bytes += size
        try:
            fed = not over_budget and stream._feed(message.data, size, self.config.inbox_size)
        except StreamClosed:
            self._consumed(peer, size)
            self._not_open_for_input(client, message.stream_id)
            return
        if not fed:
            if not over_budget:
                self._consumed(peer, size)
            log.warning("client %r flooded stream %r with input its handler does not read", client.id,
                        message.stream_id)
            stream.fail(InboxFull(f"stream {message.stream_id!r} has more unread input than its inbox holds "
                                  f"({self.config.inbox_size} messages, {self.config.max_message_size} bytes)"))

    def _not_open_for_input(self, client: Client, stream_id: Any) -> None:
        # Untied: the id may already name the client's next call.
        self._refuse(client, UnknownStream(f"stream {stream_id!r} is not open for input"), None)

    def _consumed(self, peer: _Peer, size: int) -> None:
        with peer.lock:
            peer.input_bytes -= size

    def _process_input(self, client: Client, message: ProcessInput) -> None:
        process = self._processes.get(message.process_id)
        deliver = getattr(process, "deliver", None)
        if not callable(deliver):
            error: IgorError = UnknownProcess(f"no process {message.process_id!r} takes input")
        elif not deliver(client.id, message.data):
            error = InboxFull(f"the inbox of process {message.process_id!r} is full")
        else:
            return
        log.warning("client %r: %s", client.id, error)
        self._send(client, {"process": message.process_id, **error_message(error)})

    # -- the server's calls to clients ---------------------------------------

    def call_client(self, client_id: ClientId, action: str, data: Any = None, timeout: Optional[float] = 30.0) -> Any:
        """Call the function ``action`` the client ``client_id`` exposed, and return its answer."""
        client = self.registry.get(client_id)
        peer = self._peer(client)
        if peer is None:
            raise UnknownClient(f"no connected client has id {client_id!r}")
        pending = _PendingCall()
        with peer.lock:
            call_id = next(peer.call_ids)
            peer.calls[call_id] = pending
        if not self._send(client, call_message(call_id, action, data), wait=True):
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
        raise RemoteError(reply.error, reply.code, reply.type)

    def _reply(self, client: Client, peer: _Peer, reply: Reply) -> None:
        with peer.lock:
            pending = peer.calls.pop(reply.call_id, None)
        if pending is None:
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

    def stop(self, timeout: float) -> None:
        self._pool.stop(timeout)
        self._loop.stop(timeout)

    def open_streams(self, client: Client) -> int:
        peer = self._peer(client)
        if peer is None:
            return 0
        with peer.lock:
            return len(peer.streams)

    # -- helpers ----------------------------------------------------------------

    def _peer(self, client: Client) -> Optional[_Peer]:
        with self._lock:
            return self._peers.get(client)

    @staticmethod
    def _stream(peer: _Peer, stream_id: Any) -> Optional[Stream]:
        with peer.lock:
            return peer.streams.get(stream_id)

    @staticmethod
    def _forget(peer: _Peer, stream: Stream) -> None:
        with peer.lock:
            if peer.streams.get(stream.stream_id) is stream:
                del peer.streams[stream.stream_id]

    @staticmethod
    def _cancel_streams(peer: _Peer) -> None:
        with peer.lock:
            streams = list(peer.streams.values())
        for stream in streams:
            stream.cancel()

    def _send(self, client: Client, message: dict, wait: bool = False) -> bool:
        # wait=False on the reader thread: never wait for a client that does not read.
        return client.send(text_frame(self.encode(message)), wait)

    def _refuse(self, client: Client, error: IgorError, stream_id: Any) -> None:
        self._send(client, error_message(error, stream_id))
        if stream_id is not None:
            self._send(client, close_message(stream_id))
