"""``igor dev MODULE:API``: serve, and restart the backend when the app's Python files change.

A supervisor binds the listening socket once and hands it to each backend it
starts (a child process, ``igor dev --child``), so the port and the token never
change and a client that connects while backends change places waits in the
socket's backlog instead of being refused. It polls the modification times of
the ``*.py`` files under the API module's folder (and ``--watch`` folders).

On a change, a backend that was started beforehand, with Igor imported but
not the app, imports the app. If that fails (a SyntaxError, any error at
import), its traceback is on stderr and the old backend keeps serving. Once it
has loaded, the old backend stops accepting, closes every connection with code
1012 (Service Restart) and the reason ``backend reloaded`` (a call in flight
fails with that close), and hands its clients' sessions and resume secrets
(see :meth:`igor.registry.ClientRegistry.export_sessions`) over to the new one,
which parks them and starts accepting: a client that introduces itself with
its secret again gets its session back.

The supervisor and a backend speak JSON lines over a socket pair: the
supervisor says ``load`` (with the token), ``start`` (with the sessions) and
``stop``; a backend answers ``loaded``, ``serving`` and, stopped, ``sessions``.
A backend whose supervisor is gone (its end of the pair closes) shuts down.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .lifecycle import announce_ready, stdin_is_pipe, watch_parent
from .loader import UsageError

__all__ = ["dev_main", "CLOSE_SERVICE_RESTART", "RELOAD_REASON"]

log = logging.getLogger("igor")

#: The close code of every connection at a reload (RFC 6455's Service Restart), and its reason.
CLOSE_SERVICE_RESTART = 1012
RELOAD_REASON = "backend reloaded"
#: Seconds between two looks at the watched files' modification times.
POLL_INTERVAL = 0.1
#: Folders never looked into for changes: caches, dependencies, hidden folders.
_SKIPPED = {"__pycache__", "node_modules", "site-packages"}

Build = Callable[..., Any]


def dev_main(parser: argparse.ArgumentParser, argv: List[str], build: Build, page_url: Callable[[Any], str]) -> int:
    """``igor dev MODULE:API [--watch DIR]... [serve options]``.

    ``parser`` is serve's, given dev's options here; ``build(args, **config)``
    makes the server the serve options describe; ``page_url(server)`` is the
    address of the ``--static`` page, token included.
    """
    group = parser.add_argument_group("dev options (igor dev MODULE:API)")
    group.add_argument("--watch", metavar="DIR", action="append", default=[],
                       help="restart the backend when a .py file under DIR changes too (the API module's "
                            "folder is always watched); repeatable")
    group.add_argument("--child", help=argparse.SUPPRESS)  # a backend the supervisor started
    args = parser.parse_args(argv)
    level = args.log_level or ("DEBUG" if args.debug else "INFO")
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.child:
            return _backend(args, build, page_url)
        if os.name != "posix":
            raise UsageError("igor dev hands its listening socket to each backend it starts, which it can do "
                             "on Linux and macOS only for now: use igor serve")
        return Supervisor(args, argv).run()
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2


class _Channel:
    """JSON lines over one end of a socket pair; a read returns None once the other end is gone."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = b""
        self._lock = threading.Lock()

    def send(self, message: Dict[str, Any]) -> bool:
        try:
            with self._lock:
                self.sock.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False

    def read(self, timeout: Optional[float] = None) -> Any:
        """The next message; None when the other end closed, ``False`` when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not select.select([self.sock], [], [], left)[0]:
                return False
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- a backend (the child) ------------------------------------------------------


def _backend(args: argparse.Namespace, build: Build, page_url: Callable[[Any], str]) -> int:
    """One backend: wait to be told to load the app, load it, serve when told, stop when told."""
    control, listening = (int(fd) for fd in args.child.split(","))
    channel = _Channel(socket.socket(fileno=control))
    listener = socket.socket(fileno=listening)
    message = channel.read()
    if not message:
        return 0  # a spare that was never needed
    try:
        server = build(args, token=message["load"]["token"], ready_line=False, exit_with_parent=False)
    except UsageError:
        raise
    except BaseException:  # SyntaxError, ImportError, whatever the app raised at import
        _print_load_error()
        return 1
    channel.send({"loaded": True})
    message = channel.read()
    if not message:
        return 0
    server.registry.import_sessions(message["start"]["sessions"])
    server.start(listener)
    channel.send({"serving": True, "url": server.url, "port": server.port, "token": server.token,
                  "page": page_url(server) if args.static else None})

    reloading, handed_over = threading.Event(), threading.Event()

    def obey() -> None:
        message = channel.read()
        if not message:  # the supervisor is gone, or wants us stopped
            server.shutdown(0)
            return
        reloading.set()
        threading.Thread(target=server.shutdown, name="igor-dev-stop", daemon=True,
                         kwargs={"close_code": CLOSE_SERVICE_RESTART, "reason": RELOAD_REASON}).start()
        # The sessions once every client has left (each parks its own), or as they are if one takes too long;
        # the registry has no condition to wait on, and this wait is over in a few milliseconds.
        deadline = time.monotonic() + server.config.shutdown_timeout / 2
        while len(server.registry) and time.monotonic() < deadline:
            time.sleep(0.01)
        sessions = server.registry.export_sessions()
        log.debug("handing %d session(s) over to the next backend (%d client(s) still connected)", len(sessions),
                  len(server.registry))
        channel.send({"sessions": sessions})
        handed_over.set()

    threading.Thread(target=obey, name="igor-dev-control", daemon=True).start()
    try:
        return server.run_forever() or 0
    finally:
        if reloading.is_set():  # the shutdown may be over before the sessions are out
            handed_over.wait(server.config.shutdown_timeout)


def _print_load_error() -> None:
    """The traceback of the app's import, without the frames of Igor and importlib above it."""
    kind, error, trace = sys.exc_info()
    report = traceback.TracebackException(kind, error, trace)  # type: ignore[arg-type]
    internal = tuple(os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, importlib.__file__))
    frames = [frame for frame in report.stack
              if not frame.filename.startswith(internal) and not frame.filename.startswith("<frozen importlib")]
    report.stack = traceback.StackSummary.from_list(frames)
    sys.stderr.write("".join(report.format()))
    sys.stderr.flush()


# -- the supervisor ---------------------------------------------------------------


class _Child:
    """A backend process and the supervisor's end of its channel."""

    def __init__(self, argv: List[str], listener: socket.socket):
        mine, theirs = socket.socketpair()
        fds = (theirs.fileno(), listener.fileno())
        command = [sys.executable, "-m", "igor", "dev", "--child", f"{fds[0]},{fds[1]}", *argv]
        # A session of its own: the Ctrl-C a terminal sends its whole process group is the supervisor's to handle.
        self.process = subprocess.Popen(command, pass_fds=fds, stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.channel = _Channel(mine)

    def stop(self, timeout: float) -> Optional[int]:
        """Let it shut down (its channel closes), kill it after ``timeout``; its exit code."""
        self.channel.close()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("backend %d did not stop within %.1f s: killing it", self.process.pid, timeout)
            self.process.kill()
            return self.process.wait()


class Supervisor:
    """Holds the port, watches the files, and swaps backends (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, argv: List[str]):
        self.args = args
        self.argv = argv
        self.token = None if args.no_token else args.token or os.environ.get("IGOR_TOKEN") or _new_token()
        self._stop = threading.Event()
        self._stop_timeout = 5.0  # the backend's shutdown_timeout, and then some
        self._roots = _watch_roots([args.api, *(p.partition("=")[2] for p in args.process),
                                    *([args.json_default] if args.json_default else [])], args.watch)
        self.current: Optional[_Child] = None
        self._spare: Optional[_Child] = None

    def run(self) -> int:
        self.listener = _listen(self.args.host, self.args.port)
        previous = {signum: signal.signal(signum, lambda *_: self._stop.set())
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        exit_with_parent = stdin_is_pipe() if self.args.exit_with_parent is None else self.args.exit_with_parent
        watch = watch_parent(lambda reason: self._stop.set()) if exit_with_parent else None
        try:
            return self._serve()
        finally:
            for child in (self._spare, self.current):
                if child is not None:
                    child.stop(self._stop_timeout)
            self.listener.close()
            if watch is not None:
                watch.set()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _serve(self) -> int:
        files = _scan(self._roots)
        first = _Child(self.argv, self.listener)
        serving = self._start(first, []) if self._load(first) else None
        if serving is None:
            code = first.stop(self._stop_timeout)
            return 0 if self._stop.is_set() else code or 1
        self.current = first
        announce_ready(serving["url"], serving["port"], serving["token"])
        if serving["page"]:
            sys.stderr.write(f"igor: open {serving['page']}\n")
            sys.stderr.flush()
        log.info("watching the .py files under %s", ", ".join(self._roots))
        self._spare = _Child(self.argv, self.listener)
        while not self._stop.wait(POLL_INTERVAL):
            if self.current is not None and self.current.process.poll() is not None:
                code = self.current.process.returncode
                log.info("the backend exited by itself (code %s): so does igor dev", code)
                self.current = None
                return code
            now = _scan(self._roots)
            changed = sorted(path for path in now.keys() | files.keys() if now.get(path) != files.get(path))
            files = now
            if changed:
                self._reload(changed)
        log.info("stopping")
        return 0

    def _reload(self, changed: List[str]) -> None:
        started = time.monotonic()
        names = ", ".join(os.path.relpath(path) for path in changed[:3]) + (" ..." if len(changed) > 3 else "")
        for path in changed:
            _forget_bytecode(path)
        new, self._spare = self._spare or _Child(self.argv, self.listener), None
        if not self._load(new):
            new.stop(self._stop_timeout)
            keeps = "the backend from before keeps serving" if self.current is not None else "nothing serves"
            log.error("the app did not load after %s changed (the error is above): %s until the "
                      "file is fixed and saved again", names, keeps)
            self._spare = _Child(self.argv, self.listener)
            return
        sessions: List[Dict[str, Any]] = []
        old, self.current = self.current, None
        if old is not None:
            old.channel.send({"stop": "reload"})
            answer = old.channel.read(self._stop_timeout)
            sessions = answer["sessions"] if answer else []
            threading.Thread(target=old.stop, args=(self._stop_timeout,), name="igor-dev-retire", daemon=True).start()
        if self._start(new, sessions) is None:
            new.stop(self._stop_timeout)
            if not self._stop.is_set():
                log.error("the new backend failed to start (see above): nothing serves until a file is saved")
        else:
            self.current = new
            log.info("backend reloaded in %.2f s (%s changed; %d session(s) handed over)",
                     time.monotonic() - started, names, len(sessions))
        self._spare = _Child(self.argv, self.listener)

    def _load(self, child: _Child) -> bool:
        """Tell ``child`` to import the app; True once it has, False if it failed (or we are stopping)."""
        child.channel.send({"load": {"token": self.token if self.token is not None else False}})
        return bool(self._answer(child, "loaded"))

    def _start(self, child: _Child, sessions: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        child.channel.send({"start": {"sessions": sessions}})
        return self._answer(child, "serving")

    def _answer(self, child: _Child, key: str) -> Optional[Dict[str, Any]]:
        while not self._stop.is_set():
            message = child.channel.read(POLL_INTERVAL)
            if message is None:
                return None
            if message and key in message:
                return message
        return None


def _new_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} is in use: pick another with --port, or --port 0 for a free one") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _watch_roots(specs: Iterable[str], extra: Iterable[str]) -> List[str]:
    """The folders to watch: the top package (or folder) of each spec's module, and ``extra``."""
    roots = [os.path.abspath(folder) for folder in extra]
    for spec in specs:
        folder = _module_folder(spec.rpartition(":")[0])
        if folder is not None:
            roots.append(folder)
    kept: List[str] = []
    for root in sorted(set(roots), key=len):
        if not any(root == k or root.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(root)
    return kept


def _module_folder(module_part: str) -> Optional[str]:
    """The folder of a module named by path or dotted name, found without importing it."""
    if module_part.endswith(".py") or "/" in module_part or os.sep in module_part:
        full = os.path.abspath(module_part)
        folder = full if os.path.isdir(full) else os.path.dirname(full)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            spec = importlib.util.find_spec(module_part.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None  # the backend says what is wrong when it loads
        if spec.submodule_search_locations:
            return os.path.abspath(list(spec.submodule_search_locations)[0])
        if not spec.origin or not os.path.isfile(spec.origin):
            return None  # built in
        folder = os.path.dirname(os.path.abspath(spec.origin))
    while os.path.isfile(os.path.join(os.path.dirname(folder), "__init__.py")):
        folder = os.path.dirname(folder)
    return folder


def _scan(roots: Iterable[str]) -> Dict[str, Tuple[int, int]]:
    """``{path: (mtime_ns, size)}`` of every .py file under ``roots``, skipping caches, hidden folders and venvs."""
    found: Dict[str, Tuple[int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED
                       and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    try:
                        stat = os.stat(path)
                    except OSError:
                        continue  # removed while we looked
                    found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


def _forget_bytecode(path: str) -> None:
    # A .pyc is trusted when its source has the same size and the same mtime in whole seconds: an edit that
    # keeps the size within the second of the last compile would load the old code.
    try:
        os.remove(importlib.util.cache_from_source(path))
    except (OSError, ValueError, NotImplementedError):
        pass
