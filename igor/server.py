"""IgorServer: the facade an application holds, for life cycle and processes.

It owns the parts and starts and stops them in order: the configuration
(:mod:`igor.config`), the client registry, the dispatcher that runs handlers
(:mod:`igor.dispatch`), the listening transport (:mod:`igor.transport`) and
a heartbeat thread that visits connections about twice a second.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .config import CALL_TIMEOUT, CONFIG, Config
from .dispatch import Dispatcher
from .encoding import make_encoder
from .exceptions import ConfigError
from .file_urls import DEFAULT_EXPIRY, Expiry, FileUrls
from .files import LegacyFileServer
from .frames import CLOSE_GOING_AWAY
from .handshake import LOOPBACK_HOSTS, SecurityPolicy, default_origins
from .lifecycle import announce_ready, watch_parent
from .process import Processes
from .registry import ClientId, ClientRegistry
from .transport import IgorTransport

if TYPE_CHECKING:
    from .window import Window

__all__ = ["IgorServer", "CONFIG"]

log = logging.getLogger("igor")

# Seconds of shutdown_timeout kept for the interpreter to exit after the shutdown itself: it took up
# to 0.2 s on a loaded 2-core machine.
_EXIT_RESERVE = 0.5


class IgorServer:
    """A WebSocket server that runs Python handlers for a UI's calls.

    ``api`` maps action names to handlers ``handler(out, data, **kwargs)``
    (nest them in dicts and pass them through :func:`igor.flatten`); the
    configuration is a dict (``config={'port': 0}``), a :class:`~igor.Config`,
    or keyword arguments (``port=0``), checked at once. Nothing listens until
    :meth:`start`, :meth:`run_forever` or ``with IgorServer(...) as server:``.
    """

    def __init__(self, api: Optional[Mapping[str, Callable]] = None,
                 config: Union[Mapping[str, Any], Config, None] = None, **options: Any):
        # No config: the module's CONFIG dict, as the original Igor read it (an app may have set keys in it).
        self.config: Config = Config.from_mapping(CONFIG if config is None else config, **options)
        _configure_logging(self.config.logging)
        self.token: Optional[str] = _resolve_token(self.config.token)
        if not _is_loopback(self.config.host) and self.token is None:
            raise ConfigError(f"refusing to listen on {self.config.host!r} without a token: set a token "
                              "(config 'token', or True to generate one)")
        self.scope: Dict[str, Any] = {}
        self.registry = ClientRegistry(self.config.session_timeout)
        on_exit = lambda code: self._request_stop(code, from_exit=True)  # noqa: E731
        encode = make_encoder(self.config.json_default)
        self._processes = Processes(self.registry, encode, self.scope, self, self.config.inbox_size, on_exit)
        #: The background processes by id (see :meth:`add_process`).
        self.processes: Dict[str, threading.Thread] = self._processes.mapping()
        self.dispatcher = Dispatcher(api or {}, self.config, self.registry, self._processes, self.scope, self,
                                     on_exit=on_exit, encode=encode)
        self._file_server: Optional[LegacyFileServer] = None
        # The signing key is made here, per server: URLs of an earlier run (or another server) never work.
        self._files = FileUrls(self.config.file_roots)
        self.api = dict(api or {})
        self.exit_code: Optional[int] = None
        self._transport: Optional[IgorTransport] = None
        # Re-entrant: a signal handler may run while the main thread holds it.
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._exit_requested = False
        self._abandoned = False
        self._restore_signals: Optional[Callable[[], None]] = None
        self._threads: list = []
        self._parent_watch: Optional[threading.Event] = None
        self._close_with = (CLOSE_GOING_AWAY, "server shutting down")

    # -- public API -----------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        """The bound port once started (useful with ``port=0``), else the configured one."""
        return self._transport.port if self._transport is not None else self.config.port

    @property
    def url(self) -> str:
        """The address clients connect to (loopback when bound to every interface)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/"

    def file_url(self, path: Union[str, os.PathLike], expires: Expiry = DEFAULT_EXPIRY) -> str:
        """An ``http://`` URL on the server's own port that serves the file ``path`` until ``expires``.

        A page uses it in ``<img src>``, ``<video src>`` (``Range`` lets it
        seek) or ``fetch`` without the token: the URL is signed for this one
        file and expiry, with a key made for this server. ``expires`` is
        seconds from now (default an hour), a ``timedelta`` or a
        ``datetime``. Only files under ``file_roots`` get one: raises
        ValueError for a path outside them (after resolving ``..`` and
        links) or a folder, FileNotFoundError for a missing file, and
        RuntimeError before :meth:`start` (the URL names the bound port).
        """
        if self._transport is None:
            raise RuntimeError("file_url() needs a started server: the URL names the port it is bound to; "
                               "call start() (or run_forever(threaded=True)) first")
        return self._files.url(self.url.replace("ws://", "http://", 1).rstrip("/"), path, expires)

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._stopped.is_set()

    def stats(self) -> Dict[str, int]:
        """What the server holds now: connections, handshakes, files being sent, streams, threads, client data."""
        pending, connections = self._transport.counts() if self._transport is not None else (0, 0)
        return {
            "connections": connections,
            "pending_handshakes": pending,
            "file_answers": self._transport.file_answers() if self._transport is not None else 0,
            "open_streams": sum(self.dispatcher.open_streams(client) for client in self.registry.clients()),
            "worker_threads": self.dispatcher.threads(),
            "busy_workers": self.dispatcher.busy_threads(),
            "held_bytes": self.dispatcher.held(),
        }

    def add_process(self, process_id: str, thread: threading.Thread) -> threading.Thread:
        """Attach a background thread under ``process_id``.

        Sets ``process_id``, ``output`` (a :class:`~igor.ProcessOutput`),
        ``scope`` and ``server`` on it, makes it a daemon (so it never keeps the
        program alive after shutdown), and starts it when the server starts,
        before any connection is accepted, or at once if it already runs. An
        exception escaping its ``run`` is logged and reported to clients;
        ``sys.exit()`` in it ends the program.
        """
        return self._processes.add(process_id, thread, start=self.running)

    def call_client(self, client_id: ClientId, action: str, data: Any = None,
                    timeout: Optional[float] = CALL_TIMEOUT) -> Any:
        """Call the function ``action`` that client ``client_id`` exposed; return what it answers.

        Blocks the calling thread (a handler or a process) until the client
        answers. Raises :class:`~igor.RemoteError` with the client's message
        (and its error's data, if any, as ``.data``) when its function fails,
        :class:`~igor.CallTimeout` after ``timeout`` seconds (the client is
        told to give up), :class:`~igor.UnknownClient` for an id that is not
        connected, :class:`~igor.UnknownAction` when the client exposes no
        such function, and :class:`~igor.ConnectionClosed` when it
        disconnects first.
        """
        return self.dispatcher.call_client(client_id, action, data, timeout)

    def start(self, sock: Optional[socket.socket] = None) -> IgorServer:
        """Bind, start the processes, then accept connections on background threads; returns at once.

        ``sock``, a TCP socket that is bound and listening already, is served
        instead of binding ``host`` and ``port`` (``igor dev`` hands each backend it
        starts the one socket it bound, so the port survives a reload).
        """
        with self._lock:
            if self._transport is not None:
                raise RuntimeError("the server has already been started")
            transport = IgorTransport(self.config, SecurityPolicy(), self.dispatcher, sock)
            self._transport = transport
        transport.policy = SecurityPolicy(
            token=self.token,
            allowed_origins=self.config.allowed_origins or default_origins(self.token is not None, transport.port),
            allowed_hosts=self.config.allowed_hosts or _default_hosts(self.config.host),
        )
        transport.files = self._files
        if self.config.file_server_config is not None:
            self._file_server = LegacyFileServer(self.config.file_server_config["root_directory"],
                                                 self.config.file_server_config["port"])
            self._spawn(self._file_server.serve_forever, "igor-file-server", poll_interval=0.2)
        # Processes first: a client connecting at once finds them running.
        self._processes.start()
        self.dispatcher.start()
        self._spawn(transport.serve_forever, "igor-accept", poll_interval=0.2)
        self._spawn(self._heartbeat, "igor-heartbeat")
        self._spawn(self._supervise, "igor-supervisor")
        log.info("Igor listening on %s", self.url)
        if self.config.exit_with_parent:
            self._parent_watch = watch_parent(lambda reason: self._request_stop(0))
        if self.config.ready_line:
            # A parent that reads the ready line may signal at once (an app quit right after it
            # started): the graceful handlers must be in place before the line is out.
            if self._restore_signals is None:
                self._restore_signals = self._install_signal_handlers()
            announce_ready(self.url, self.port, self.token)
        return self

    def run_forever(self, threaded: bool = False) -> Optional[int]:
        """Serve until shut down.

        Starts the server unless :meth:`start` already did. With
        ``threaded=True`` it serves in the background and returns.
        Otherwise it blocks; SIGTERM and Ctrl-C shut down gracefully and it
        returns the exit code (warnings and errors go to stderr meanwhile if
        the program configured no logging at all); a handler or process calling
        ``sys.exit(code)`` makes it raise ``SystemExit(code)`` after the
        graceful shutdown, so the program ends with that code.
        """
        if threaded:
            if self._transport is None:
                self.start()
            return None
        # The handlers first: a parent that reads the ready line may signal at once.
        restore = self._restore_signals or self._install_signal_handlers()
        self._restore_signals = restore
        fallback = _stderr_unless_configured()
        try:
            if self._transport is None:
                self.start()
            # wait() in a loop keeps the main thread responsive to signals on every platform.
            while not self._stopped.wait(0.5):
                pass
        finally:
            restore()
            self._restore_signals = None
            if fallback is not None:
                log.removeHandler(fallback)
        if self._exit_requested:
            raise SystemExit(self.exit_code)
        return self.exit_code

    def shutdown(self, code: int = 0, close_code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> bool:
        """Stop serving: close every stream and connection, stop processes, within ``shutdown_timeout``.

        Safe from any thread. Returns True once everything has stopped;
        False when called from a handler or a process (which the shutdown
        itself waits for), and when a handler or process ignored its cancel
        and was abandoned still running (the log names it). The program can
        exit all the same: every thread Igor starts is a daemon.

        Every connection is closed with ``close_code`` and ``reason``. Any code
        but 1001 (Going Away) closes the connections before the streams are
        cancelled, so that clients learn of their calls' end from that code, not
        from a cancel: ``igor dev`` closes with 1012 (Service Restart).
        """
        self._close_with = (close_code, reason)
        self._request_stop(code)
        if self._transport is None:
            self._stopped.set()
            return True
        current = threading.current_thread()
        if self.dispatcher.owns_thread(current) or self._processes.owns(current):
            return self._stopped.is_set()
        return self._stopped.wait(self.config.shutdown_timeout + 5) and not self._abandoned

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the server has stopped; returns its exit code."""
        self._stopped.wait(timeout)
        return self.exit_code

    def __enter__(self) -> IgorServer:
        if self._transport is None:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def open_window(self, path: str = "/", browser: Optional[str] = None, args: Sequence[str] = ()) -> Window:
        """Show the ``static_dir`` page at ``path`` in a browser window; shut down once it closes.

        The window is a Chromium, Chrome or Edge app-mode window (no tabs, no
        address bar) with a throwaway profile and the token in the URL's
        fragment; ``browser`` names the executable, ``args`` are more flags
        for it. Starts the server unless started. What ends the server is the
        browser process ending (the window closed, the browser killed), never
        a page reload. The exit code is 0 when the window was closed or the
        browser killed, 1 when the browser failed (it exited with an error
        code: no display, a bad flag; its last lines are logged). Returns the
        :class:`igor.window.Window`; raises :class:`igor.window.BrowserNotFound`
        when there is no browser. On Linux the window also closes when the
        backend is killed outright (SIGKILL).
        """
        from .window import open_server_window  # a browser is only looked for by those who open a window

        return open_server_window(self, path, browser, args, on_close=lambda code: self.shutdown(1 if code > 0 else 0))

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
        # One deadline for the whole shutdown: each step gets what the ones before it left, and a
        # little is kept back so the program has exited, not only stopped, within shutdown_timeout.
        timeout = self.config.shutdown_timeout
        deadline = time.monotonic() + max(timeout - _EXIT_RESERVE, timeout / 2)
        log.info("Igor shutting down (exit code %s)", self.exit_code)
        transport = self._transport
        abandoned: List[str] = []
        close_code, reason = self._close_with
        close_first = close_code != CLOSE_GOING_AWAY
        steps = [
            lambda: self._parent_watch is not None and self._parent_watch.set(),
            transport.shutdown,        # stop accepting
            transport.server_close,    # release the port
            lambda: self._file_server is not None and self._file_server.close(),
            lambda: close_first and transport.close_all(close_code, reason),
            self.dispatcher.cancel_all,
            self._processes.stop,
            lambda: transport.close_all(close_code, reason),
            lambda: abandoned.extend(f"process {pid!r}" for pid in self._processes.join(deadline)),
            lambda: self._end_connections(deadline),
            lambda: abandoned.extend(self.dispatcher.stop(deadline)),
        ]
        for step in steps:
            # One failing step must not leave the rest undone.
            try:
                step()
            except Exception:
                log.exception("error during shutdown")
        for name in abandoned:
            log.warning("%s ignored its cancel and is abandoned still running", name)
        self._abandoned = bool(abandoned)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _end_connections(self, deadline: float) -> None:
        # Half the time left for peers to answer our close frame; then cut the rest off.
        if self._transport.wait_until_empty(max(0.0, deadline - time.monotonic()) / 2):
            return
        self._transport.abort_all()
        if not self._transport.wait_until_empty(max(0.0, deadline - time.monotonic())):
            log.warning("some connections did not end within shutdown_timeout")

    def _heartbeat(self) -> None:
        config = self.config
        intervals = [0.5, config.handshake_timeout / 4, config.ping_timeout / 4, config.send_timeout / 4]
        if config.ping_interval is not None:
            intervals.append(config.ping_interval / 4)
        tick = max(0.01, min(intervals))
        while not self._stop_requested.wait(tick):
            # A failure in one tick is logged; the next tick runs all the same,
            # or handshake expiry, session purging and pings would silently stop.
            for step in (self.registry.purge_sessions, self._transport.tick,
                         lambda: self.dispatcher.tick(time.monotonic())):
                try:
                    step()
                except Exception:
                    log.exception("error in the heartbeat")

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


def _stderr_unless_configured() -> Optional[logging.Handler]:
    """Print Igor's warnings and errors to stderr while serving, when the program set up no logging at all.

    A library adds only a NullHandler, which is right, but a script that
    never configured logging would then never hear that a process crashed
    or a push found no client. A program that configured logging in any way
    keeps full control: nothing is added.
    """
    if logging.getLogger().handlers or any(not isinstance(h, logging.NullHandler) for h in log.handlers):
        return None
    handler = logging.StreamHandler()  # stderr
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("igor %(levelname)s: %(message)s"))
    log.addHandler(handler)
    return handler


def _configure_logging(settings: Optional[Mapping[str, Any]]) -> None:
    """Set up the ``igor`` logger only when the application asked for it in its config."""
    if settings is None:
        return
    logger = logging.getLogger("igor")
    logger.setLevel(settings["level"])
    path = settings.get("file")
    if path and not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def _resolve_token(token: Any) -> Optional[str]:
    if token is None:
        token = os.environ.get("IGOR_TOKEN") or None
    if token is True:
        return secrets.token_urlsafe(32)
    if token is False or token is None:
        return None
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
