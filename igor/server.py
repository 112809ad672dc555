"""IgorServer: configuration, dispatch of calls to worker threads, life cycle."""

from __future__ import annotations

import copy
import inspect
import ipaddress
import logging
import os
import queue
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Generator
from typing import Any, Callable, Dict, Mapping, Optional

from .core import ProcessOutput, Stream
from .exceptions import (
    ConfigError,
    IgorError,
    ProtocolError,
    StreamCancelled,
    StreamClosed,
    StreamIdInUse,
    UnknownAction,
)
from .handshake import DEFAULT_ORIGINS, LOOPBACK_HOSTS, SecurityPolicy
from .lifecycle import announce_ready, watch_parent
from .protocol import Call, close_message, data_message, encode, error_message, is_valid_id, parse_message
from .registry import Client, ClientRegistry
from .transport import IgorTransport

__all__ = ["IgorServer", "CONFIG"]

log = logging.getLogger("igor")

#: The defaults; a config given to :class:`IgorServer` is merged over a copy.
CONFIG: Dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 5678,                    # 0: any free port, then read server.port
    "token": None,                   # str, True (generate), False (none), None (IGOR_TOKEN or none)
    "allowed_origins": None,         # None: DEFAULT_ORIGINS
    "allowed_hosts": None,           # None: loopback names plus the bound host
    "max_clients": 64,
    "max_message_size": 64 * 1024 * 1024,
    "ping_interval": 20.0,           # seconds of silence before the server pings; None: never
    "ping_timeout": 20.0,            # seconds to wait for any frame after a ping
    "send_queue_size": 10_000,       # frames queued per client before it counts as slow
    "send_timeout": 10.0,            # seconds a handler waits for room in that queue
    "handshake_timeout": 10.0,       # seconds a connection may take to finish its opening handshake
    "session_timeout": 10.0,         # seconds a session survives its client's disconnect
    "worker_idle_timeout": 30.0,     # seconds an idle worker thread waits for the next call
    "shutdown_timeout": 2.0,         # seconds to wait for processes and connections at shutdown
    "static_dir": None,              # a folder served read-only over plain HTTP GET
    "ready_line": False,             # print IGOR_READY {...} to stdout once listening
    "exit_with_parent": False,       # shut down when stdin closes or the parent dies
    "debug": False,                  # send tracebacks to clients
    "logging": {"level": logging.WARNING, "file": None},
}

_BUILTIN_INTRODUCE = "introduce_self"


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    log.error("exit requested: %s", code)
    return 1


class _WorkerPool:
    """Threads for handlers: an idle one takes the call, else a new one starts.

    No fixed size, so long streams never queue behind each other; idle
    threads are reused, and end after ``idle_timeout`` seconds without work.
    """

    def __init__(self, idle_timeout: float):
        self.idle_timeout = idle_timeout
        self._tasks: queue.SimpleQueue[Optional[Callable[[], None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: set = set()

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
            thread = threading.Thread(target=self._work, args=(task,), name="igor-worker", daemon=True)
            self._threads.add(thread)
        thread.start()

    def _work(self, task: Optional[Callable[[], None]]) -> None:
        while task is not None:
            task()
            with self._lock:
                self._idle += 1
            task = self._next_task()
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
                    # only if it has not handed this worker a task meanwhile.
                    if self._tasks.empty():
                        self._idle -= 1
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


class _Handler:
    """An action's function, with the keyword arguments it can take."""

    def __init__(self, name: str, function: Callable):
        if not callable(function):
            raise ConfigError(f"action {name!r} is not callable: {function!r}")
        self.function = function
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            self.accepts: Optional[frozenset] = None
            return
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            self.accepts = None
        else:
            self.accepts = frozenset(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

    def __call__(self, out: Stream, data: Any, kwargs: Dict[str, Any]) -> Any:
        if self.accepts is not None:
            kwargs = {key: value for key, value in kwargs.items() if key in self.accepts}
        return self.function(out, data, **kwargs)


class IgorServer:
    """A WebSocket server that runs Python handlers for a UI's calls.

    ``api`` maps action names to handlers ``handler(out, data, **kwargs)``
    (nest them in dicts and pass them through :func:`igor.flatten`);
    ``config`` is merged over :data:`CONFIG`. Nothing listens until
    :meth:`run_forever` (or :meth:`start`).
    """

    def __init__(self, api: Optional[Mapping[str, Callable]] = None, config: Optional[Mapping[str, Any]] = None):
        self.config = _merge_config(config or {})
        self._configure_logging()
        api = dict(api or {})
        if _BUILTIN_INTRODUCE in api:
            raise ConfigError(f"{_BUILTIN_INTRODUCE!r} is a built-in action and cannot be replaced")
        self.api = api
        self._handlers = {name: _Handler(name, function) for name, function in api.items()}
        self.scope: Dict[str, Any] = {}
        self.registry = ClientRegistry(self.config["session_timeout"])
        self.processes: Dict[str, threading.Thread] = {}
        self.token: Optional[str] = _resolve_token(self.config["token"])
        self.policy = SecurityPolicy(
            token=self.token,
            allowed_origins=tuple(self.config["allowed_origins"] or DEFAULT_ORIGINS),
            allowed_hosts=tuple(self.config["allowed_hosts"] or _default_hosts(self.config["host"])),
        )
        self.exit_code: Optional[int] = None
        self._pool = _WorkerPool(self.config["worker_idle_timeout"])
        self._transport: Optional[IgorTransport] = None
        # Re-entrant: a signal handler may run while the main thread holds it.
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._exit_requested = False
        self._threads: list = []
        self._parent_watch: Optional[threading.Event] = None

    # -- public API -----------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config["host"]

    @property
    def port(self) -> int:
        """The bound port once started (useful with ``port: 0``), else the configured one."""
        return self._transport.port if self._transport is not None else self.config["port"]

    @property
    def url(self) -> str:
        """The address clients connect to (loopback when bound to every interface)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._stopped.is_set()

    def add_process(self, process_id: str, thread: threading.Thread) -> threading.Thread:
        """Attach a background thread under ``process_id``.

        Sets ``process_id``, ``output`` (a :class:`~igor.ProcessOutput`),
        ``scope`` and ``server`` on it, makes it a daemon (so it never keeps the
        program alive after shutdown), and starts it when the server runs, or
        at once if it already runs. An exception escaping its ``run`` is logged
        and reported to clients; ``sys.exit()`` in it ends the program.
        """
        if not isinstance(thread, threading.Thread):
            raise TypeError("a process must be a threading.Thread")
        if not isinstance(process_id, str) or not process_id:
            # Strings only: clients number their own streams with integers,
            # and a push's streamId must never be mistaken for one of them.
            raise ValueError("a process id must be a non-empty string")
        with self._lock:
            if process_id in self.processes:
                raise ValueError(f"a process with id {process_id!r} already exists")
            self.processes[process_id] = thread
        thread.process_id = process_id
        thread.output = ProcessOutput(self, process_id)
        thread.scope = self.scope
        thread.server = self
        thread.daemon = True
        thread.run = self._guard_process(process_id, thread, thread.run)
        if self.running:
            thread.start()
        return thread

    def start(self) -> IgorServer:
        """Bind, and serve on background threads; returns at once."""
        with self._lock:
            if self._transport is not None:
                raise RuntimeError("the server has already been started")
            if not _is_loopback(self.host) and self.token is None:
                raise ConfigError(f"refusing to listen on {self.host!r} without a token: set config['token']")
            self._transport = IgorTransport(self, self.host, self.config["port"])
        self._spawn(self._transport.serve_forever, "igor-accept", poll_interval=0.2)
        self._spawn(self._heartbeat, "igor-heartbeat")
        self._spawn(self._supervise, "igor-supervisor")
        for thread in list(self.processes.values()):
            thread.start()
        log.info("Igor listening on %s", self.url)
        if self.config["exit_with_parent"]:
            self._parent_watch = watch_parent(lambda reason: self._request_stop(0))
        if self.config["ready_line"]:
            announce_ready(self.url, self.port, self.token)
        return self

    def run_forever(self, threaded: bool = False) -> Optional[int]:
        """Serve until shut down.

        Starts the server unless :meth:`start` already did. With
        ``threaded=True`` it serves in the background and returns.
        Otherwise it blocks; SIGTERM and Ctrl-C shut down gracefully and it
        returns the exit code; a handler or process calling
        ``sys.exit(code)`` makes it raise ``SystemExit(code)`` after the
        graceful shutdown, so the program ends with that code.
        """
        if self._transport is None:
            self.start()
        if threaded:
            return None
        restore = self._install_signal_handlers()
        try:
            # wait() in a loop keeps the main thread responsive to signals on every platform.
            while not self._stopped.wait(0.5):
                pass
        finally:
            restore()
        if self._exit_requested:
            raise SystemExit(self.exit_code)
        return self.exit_code

    def shutdown(self, code: int = 0) -> None:
        """Stop serving: close every stream and connection, stop processes.

        Safe from any thread. It waits for the shutdown to complete, except
        when called from a handler or process (which the shutdown waits for).
        """
        self._request_stop(code)
        if self._transport is None:
            self._stopped.set()
            return
        current = threading.current_thread()
        if not self._pool.owns(current) and current not in self.processes.values():
            self._stopped.wait(self.config["shutdown_timeout"] * 3 + 5)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the server has stopped; returns its exit code."""
        self._stopped.wait(timeout)
        return self.exit_code

    # -- life cycle ---------------------------------------------------------

    def _spawn(self, target: Callable, name: str, **kwargs: Any) -> None:
        thread = threading.Thread(target=target, name=name, kwargs=kwargs, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _request_stop(self, code: int, from_exit: bool = False) -> None:
        with self._lock:
            if self._stop_requested.is_set():
                return
            self.exit_code = code
            self._exit_requested = from_exit
            self._stop_requested.set()

    def _supervise(self) -> None:
        self._stop_requested.wait()
        try:
            self._close_everything()
        except Exception:
            log.exception("error during shutdown")
        finally:
            self._stopped.set()

    def _close_everything(self) -> None:
        timeout = self.config["shutdown_timeout"]
        log.info("Igor shutting down (exit code %s)", self.exit_code)
        transport = self._transport
        steps = [
            lambda: self._parent_watch is not None and self._parent_watch.set(),
            transport.shutdown,        # stop accepting
            transport.server_close,    # release the port
            lambda: [self._cancel_streams(client) for client in self.registry.clients()],
            lambda: [thread.stop() for thread in self.processes.values() if callable(getattr(thread, "stop", None))],
            transport.close_all,
            lambda: self._join_processes(timeout),
            lambda: self._end_connections(timeout),
            lambda: self._pool.stop(timeout),
        ]
        for step in steps:
            # One failing step must not leave the rest undone.
            try:
                step()
            except Exception:
                log.exception("error during shutdown")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _join_processes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.processes.values():
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("process %r did not stop within %ss", thread.process_id, timeout)

    def _end_connections(self, timeout: float) -> None:
        if self._transport.wait_until_empty(timeout):
            return
        # Peers that neither read our close frame nor answer it: cut them off.
        for handler in self._transport.handlers():
            handler.abort()
        if not self._transport.wait_until_empty(timeout):
            log.warning("some connections did not end within %ss", 2 * timeout)

    def _heartbeat(self) -> None:
        interval = self.config["ping_interval"]
        timeout = self.config["ping_timeout"]
        tick = min(0.5, self.config["handshake_timeout"] / 4, *((interval / 4, timeout / 4) if interval else ()))
        while not self._stop_requested.wait(tick):
            self.registry.purge_sessions()
            self._transport.expire_handshakes()
            self._transport.expire_closing()
            if not interval:
                continue
            now = time.monotonic()
            for handler in self._transport.handlers():
                if handler.client is None:
                    continue
                if handler.ping_sent is not None:
                    if now - handler.ping_sent > timeout:
                        log.warning("client %r did not answer a ping within %ss; dropping it",
                                    handler.client.id, timeout)
                        handler.abort()
                elif now - handler.last_seen > interval:
                    handler.send_ping()

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def on_signal(signum: int, frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._request_stop(0)

        for name in ("SIGINT", "SIGTERM"):
            if hasattr(signal, name):
                signum = getattr(signal, name)
                previous[signum] = signal.signal(signum, on_signal)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    def _guard_process(self, process_id: str, thread: threading.Thread, run: Callable[[], None]) -> Callable[[], None]:
        def guarded_run() -> None:
            try:
                run()
            except SystemExit as exc:
                self._request_stop(_exit_code(exc.code), from_exit=True)
            except Exception as exc:
                log.exception("process %r failed", process_id)
                try:
                    thread.output.send_error(exc)
                except Exception:
                    log.exception("could not report the failure of process %r", process_id)

        return guarded_run

    # -- connections and dispatch (called by the transport) -------------------

    def _client_connected(self, client: Client) -> None:
        self.registry.add(client)
        log.info("client %r connected from %s", client.id, client.address)

    def _client_left(self, client: Client) -> None:
        client.connected = False
        self._cancel_streams(client)
        self.registry.remove(client)
        log.info("client %r left", client.id)

    def _cancel_streams(self, client: Client) -> None:
        with client.streams_lock:
            streams = list(client.streams.values())
        for stream in streams:
            stream.cancel()

    def _message_received(self, client: Client, text: str) -> None:
        try:
            message = parse_message(text)
        except ProtocolError as exc:
            log.warning("client %r sent a malformed message: %s", client.id, exc)
            with client.streams_lock:
                stream_id = None if exc.stream_id in client.streams else exc.stream_id
            self._refuse(client, exc, stream_id)
            return
        with client.streams_lock:
            stream = client.streams.get(message.stream_id)
        if not isinstance(message, Call):
            if stream is not None:
                stream.cancel()
            return
        if stream is not None:
            log.warning("client %r reused open stream id %r", client.id, message.stream_id)
            self._refuse(client, _stream_in_use(message.stream_id), None)
            return
        if message.action == _BUILTIN_INTRODUCE:
            self._introduce(client, message)
            return
        handler = self._handlers.get(message.action)
        if handler is None:
            log.warning("client %r called unknown action %r", client.id, message.action)
            self._refuse(client, UnknownAction(f"unknown action {message.action!r}"), message.stream_id)
            return
        stream = Stream(client, message.stream_id, debug=self.config["debug"])
        with client.streams_lock:
            client.streams[message.stream_id] = stream
        self._pool.submit(lambda: self._run_call(client, stream, handler, message))

    def _refuse(self, client: Client, error: IgorError, stream_id: Any) -> None:
        # On the reader thread: never wait for a client that does not read.
        client.send(encode(error_message(error, stream_id)), False)
        if stream_id is not None:
            client.send(encode(close_message(stream_id)), False)

    def _introduce(self, client: Client, call: Call) -> None:
        data = call.data
        new_id = data.get("client_id") if isinstance(data, dict) else None
        if not is_valid_id(new_id):
            self._refuse(client, ProtocolError("introduce_self needs data {\"client_id\": <string or integer>}"),
                         call.stream_id)
            return
        old_id = client.id
        try:
            self.registry.rename(client, new_id)
        except IgorError as exc:
            log.warning("client %r: %s", old_id, exc)
            self._refuse(client, exc, call.stream_id)
            return
        log.info("client %r is now %r", old_id, new_id)
        client.send(encode(data_message(call.stream_id, {"client_id": new_id})), False)
        client.send(encode(close_message(call.stream_id)), False)

    def _run_call(self, client: Client, stream: Stream, handler: _Handler, call: Call) -> None:
        kwargs = {
            "session": client.session,
            "scope": self.scope,
            "client_id": client.id,
            "stream_id": call.stream_id,
            "server": self,
            "client": client,
        }
        try:
            result = handler(stream, call.data, kwargs)
            if isinstance(result, Generator):
                try:
                    for value in result:
                        stream.send(value)
                finally:
                    result.close()
            elif result is not None:
                stream.send(result)
            stream.close()
        except StreamCancelled:
            log.debug("stream %r of client %r ended by cancel", call.stream_id, client.id)
        except SystemExit as exc:
            stream.close()
            log.info("action %r asked the program to exit", call.action)
            self._request_stop(_exit_code(exc.code), from_exit=True)
        except Exception as exc:
            if isinstance(exc, StreamClosed) and stream.closed:
                log.error("action %r sent on its stream after closing it", call.action)
                return
            log.exception("action %r failed for client %r", call.action, client.id)
            if not stream.closed:
                try:
                    stream.send_error(exc, traceback=traceback.format_exc())
                except StreamClosed:
                    pass
        except BaseException:
            # Not an error a handler means to report (GeneratorExit, an
            # asyncio CancelledError leaking out): keep the promise that
            # every stream closes, and keep the worker alive.
            log.exception("action %r ended abnormally for client %r", call.action, client.id)
            stream.close()

    # -- configuration ------------------------------------------------------

    def _configure_logging(self) -> None:
        settings = self.config["logging"]
        logger = logging.getLogger("igor")
        logger.setLevel(settings.get("level", logging.WARNING))
        path = settings.get("file")
        if path and not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)


def _stream_in_use(stream_id: Any) -> IgorError:
    return StreamIdInUse(f"streamId {stream_id!r} names a stream that is still open")


def _merge_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = set(config) - set(CONFIG)
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(map(str, unknown)))}; known: {', '.join(CONFIG)}")
    merged = copy.deepcopy(CONFIG)
    for key, value in config.items():
        if key == "logging":
            if not isinstance(value, Mapping) or set(value) - {"level", "file"}:
                raise ConfigError("config['logging'] must be a dict with 'level' and/or 'file'")
            merged["logging"].update(value)
        else:
            merged[key] = value
    port = merged["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
    for key in ("session_timeout", "send_timeout", "handshake_timeout", "worker_idle_timeout", "shutdown_timeout",
                "ping_timeout"):
        if not isinstance(merged[key], (int, float)) or merged[key] <= 0:
            raise ConfigError(f"{key} must be a positive number of seconds")
    for key in ("max_message_size", "send_queue_size"):
        if not isinstance(merged[key], int) or merged[key] <= 0:
            raise ConfigError(f"{key} must be a positive integer")
    static_dir = merged["static_dir"]
    if static_dir is not None and not os.path.isdir(static_dir):
        raise ConfigError(f"static_dir {static_dir!r} is not a folder")
    return merged


def _resolve_token(token: Any) -> Optional[str]:
    if token is None:
        token = os.environ.get("IGOR_TOKEN") or None
    if token is True:
        return secrets.token_urlsafe(32)
    if token is False or token is None:
        return None
    if not isinstance(token, str) or not token or any(c.isspace() or c == "," for c in token):
        raise ConfigError("token must be a non-empty string without spaces or commas, True, False or None")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_hosts(bound: str) -> tuple:
    if _is_loopback(bound) or bound in ("", "0.0.0.0", "::"):
        return LOOPBACK_HOSTS
    return LOOPBACK_HOSTS + (f"[{bound}]" if ":" in bound else bound,)
