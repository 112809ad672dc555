"""A window without Node: the page in an installed Chromium-family browser's app mode.

:func:`open_window` finds Chromium, Chrome or Edge (or takes the one it is
given), starts it with ``--app=URL`` (a window without tabs or address bar)
and a throwaway profile, watches the browser *process*, and calls back once
it has ended. The backend's life is tied to that process, not to the page's
WebSocket: a reload drops the socket and opens a new one, and must not end
the backend; closing the window (or killing the browser) ends the process.

The throwaway ``--user-data-dir`` is what makes the process ours: with the
user's own profile, Chromium hands the window to an instance already running
and the process we started exits at once.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import IO, Any, Callable, Deque, List, Optional, Sequence, Set
from urllib.parse import quote

from .exceptions import ConfigError
from .loader import UsageError

# The server is typed Any here: server.py imports this module (for open_window), and the arrows run one way.
IgorServer = Any

__all__ = ["Window", "BrowserNotFound", "find_browser", "open_window", "page_url"]

log = logging.getLogger("igor")

#: Looked for on PATH, in this order.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                 "microsoft-edge", "microsoft-edge-stable", "msedge", "chrome")

_MAC_APPS = ("Chromium.app/Contents/MacOS/Chromium", "Google Chrome.app/Contents/MacOS/Google Chrome",
             "Microsoft Edge.app/Contents/MacOS/Microsoft Edge")
_WINDOWS_APPS = (r"Chromium\Application\chrome.exe", r"Google\Chrome\Application\chrome.exe",
                 r"Microsoft\Edge\Application\msedge.exe")

# The browser's own flags: an app window, a profile of its own, and no first-run questions in it.
_APP_FLAGS = ("--no-first-run", "--no-default-browser-check")

# How many of the browser's last stderr lines are kept to tell why it failed.
_KEPT_LINES = 20

# Seconds a browser gets to quit on a polite request before it is killed, when the backend ends first.
_CLOSE_GRACE = 2.0


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """On Linux, what makes a child get SIGTERM when its parent dies, even by SIGKILL; None elsewhere.

    Without it a backend killed outright leaves its window open on a page that
    can no longer reach it. Made here, not in the child: between fork and
    exec the child should call nothing it would have to look up.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    terminate = int(signal.SIGTERM)
    return lambda: prctl(_PR_SET_PDEATHSIG, terminate)


_PR_SET_PDEATHSIG = 1
_die_with_parent = _parent_death_signal()


class BrowserNotFound(Exception):
    """No browser to open a window in: none installed where looked, or the one named does not exist."""


def _candidates() -> List[str]:
    """Where a Chromium-family browser is usually installed on this OS, beyond PATH."""
    if sys.platform == "darwin":
        roots = ["/Applications", os.path.expanduser("~/Applications")]
        return [os.path.join(root, app) for root in roots for app in _MAC_APPS]
    if os.name == "nt":
        roots = [os.environ.get(name) for name in ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA")]
        return [os.path.join(root, app) for root in roots if root for app in _WINDOWS_APPS]
    return []  # Linux and the BSDs: the package manager puts it on PATH (snap too, in /snap/bin)


def find_browser(browser: Optional[str] = None) -> str:
    """The path of the browser to start: ``browser`` (a path, or a name on PATH), else the first one found.

    Raises :class:`BrowserNotFound` with a one-line message.
    """
    if browser:
        if browser.rstrip("/").endswith(".app") and os.path.isdir(browser):  # a macOS bundle: its executable
            name = os.path.basename(browser.rstrip("/"))[:-len(".app")]
            browser = os.path.join(browser, "Contents", "MacOS", name)
        found = browser if os.path.isfile(browser) else shutil.which(browser)
        if not found:
            raise BrowserNotFound(f"no browser at {browser!r}: give the path of a Chromium, Chrome or Edge executable")
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for path in _candidates():
        if os.path.isfile(path):
            return path
    raise BrowserNotFound("no Chromium, Chrome or Edge found: install Chromium or pass --browser PATH")


def page_url(http_url: str, path: str = "/", token: Optional[str] = None) -> str:
    """``path`` on the server at ``http_url``, with the token in the fragment, which browsers never send."""
    url = http_url.rstrip("/") + "/" + path.lstrip("/")
    if not token:
        return url
    return f"{url}{'&' if '#' in url else '#'}token={quote(token, safe='')}"


class Window:
    """A browser window opened by :func:`open_window`: its process, and what to do when it ends."""

    def __init__(self, command: Sequence[str], profile: str, url: str,
                 on_close: Optional[Callable[[int], object]]):
        #: The throwaway profile folder (``--user-data-dir``), removed once the browser has ended.
        self.profile = profile
        self.url = url
        self.process: subprocess.Popen
        self._on_close = on_close
        self._closed = threading.Event()
        self._output: Deque[str] = deque(maxlen=_KEPT_LINES)
        started = threading.Event()
        failure: List[OSError] = []
        # The thread that starts the browser is the one that waits for it, for as long as it runs:
        # Linux's parent-death signal follows the thread that forked, not the process.
        threading.Thread(target=self._run, args=(command, started, failure), name="igor-window-watch",
                         daemon=True).start()
        started.wait()
        if failure:
            _remove(profile)
            raise failure[0]

    def _run(self, command: Sequence[str], started: threading.Event, failure: List[OSError]) -> None:
        try:
            # stdin not inherited: the backend's stdin may be its parent's pipe, watched for end of file.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        except OSError as exc:
            failure.append(exc)
            started.set()
            return
        # Before the watch starts, so that a browser that ends at once is never left in the set.
        _open_windows.add(self)
        assert self.process.stderr is not None
        # A thread of its own: the browser's helper processes inherit the pipe and may hold it
        # open a moment after the browser itself has ended, so the end is told by wait(), not EOF.
        threading.Thread(target=self._read_output, args=(self.process.stderr,), name="igor-window-output",
                         daemon=True).start()
        started.set()
        self._watch()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def closed(self) -> bool:
        """True once the browser has ended and its profile is removed."""
        return self._closed.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the browser has ended (and its profile is removed); its exit code, or None on timeout."""
        return self.process.returncode if self._closed.wait(timeout) else None

    def close(self, timeout: float = _CLOSE_GRACE) -> None:
        """End the browser: ask it to quit, kill it after ``timeout`` seconds; returns once it has ended."""
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Chromium closes its windows and quits
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._closed.wait(timeout + 1.0)

    def _read_output(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                text = line.decode("utf-8", "replace").rstrip()
                log.debug("browser: %s", text)
                self._output.append(text)

    def _watch(self) -> None:
        code = self.process.wait()
        _open_windows.discard(self)
        # Killed or terminated from outside (a negative code on POSIX) is how a window may end, not a failure.
        if code <= 0:
            log.info("the window's browser ended (exit code %s)", code)
        else:
            lines = " | ".join(self._output) or "no output"
            log.warning("the window's browser ended with exit code %s: %s", code, lines)
        # The profile first: once on_close has run the program may exit, and this thread with it.
        _remove(self.profile)
        self._closed.set()
        if self._on_close is not None:
            try:
                self._on_close(code)
            except Exception:
                log.exception("error in the window's on_close")


def _remove(profile: str) -> None:
    # Helper processes may still be writing for a moment (and on Windows hold their files open).
    for _ in range(20):
        shutil.rmtree(profile, ignore_errors=True)
        if not os.path.exists(profile):
            return
        time.sleep(0.05)
    log.warning("could not remove the window's profile %s", profile)


# Windows still open at exit: the backend is ending, so its window goes too, profile and all.
_open_windows: Set[Window] = set()


@atexit.register
def _close_open_windows() -> None:
    for window in list(_open_windows):
        window._on_close = None  # the program is ending already
        window.close()


def open_window(url: str, on_close: Optional[Callable[[int], object]] = None, browser: Optional[str] = None,
                args: Sequence[str] = ()) -> Window:
    """Open ``url`` in a Chromium-family browser's app mode, with a throwaway profile.

    ``browser`` is the executable (a path or a name on PATH; default: the
    first of Chromium, Chrome and Edge found, see :func:`find_browser`),
    ``args`` more flags for it (``--headless=new``, ``--no-sandbox``...).
    ``on_close(exit_code)`` runs on a background thread once the browser
    process has ended and its profile is removed. Windows still open when
    the program exits are closed. Raises :class:`BrowserNotFound`, and
    :class:`OSError` when the browser cannot be started.
    """
    executable = find_browser(browser)
    profile = tempfile.mkdtemp(prefix="igor-window-")
    window = Window([executable, f"--app={url}", f"--user-data-dir={profile}", *_APP_FLAGS, *args],
                    profile, url, on_close)
    log.info("window opened: browser %s, pid %d, profile %s", executable, window.pid, profile)
    return window


def open_server_window(server: IgorServer, path: str, browser: Optional[str], args: Sequence[str],
                       on_close: Callable[[int], object]) -> Window:
    """:meth:`IgorServer.open_window`: the server's ``static_dir`` page at ``path``, token in the fragment."""
    if server.config.static_dir is None:
        raise ConfigError("open_window shows the page of static_dir: set static_dir to the page's folder")
    if not server.running:
        server.start()
    return open_window(page_url("http" + server.url[len("ws"):], path, server.token), on_close, browser, args)


# -- the command line: igor app ----------------------------------------------

def app_main(parser: argparse.ArgumentParser, argv: List[str],
             serve: Callable[[argparse.Namespace], int]) -> int:
    """``igor app MODULE:API --static DIR``: ``serve``'s options, and the page in a window that the backend ends with.

    ``parser`` is serve's, given the app's options here; ``serve`` runs the
    server and calls ``args.window(server)`` once it listens.
    """
    app = parser.add_argument_group("app options (igor app MODULE:API --static DIR)")
    app.add_argument("--browser", metavar="PATH",
                     help="the Chromium, Chrome or Edge to open the window in, a path or a name on PATH "
                          "(default: the first of them found)")
    app.add_argument("--browser-arg", metavar="ARG", action="append", default=[],
                     help="one more flag for the browser, written --browser-arg=--flag (e.g. "
                          "--browser-arg=--headless=new); repeatable")
    args = parser.parse_args(argv)
    try:
        if not args.static:
            raise UsageError("app shows the page of --static DIR: give it the folder of the page's index.html")
        try:
            # Before serving: a missing browser is a mistake in the command, told before anything listens.
            executable = find_browser(args.browser)
        except BrowserNotFound as exc:
            raise UsageError(str(exc)) from None

        def window(server: IgorServer) -> None:
            try:
                server.open_window(browser=executable, args=args.browser_arg)
            except OSError as exc:
                raise UsageError(f"cannot start the browser {executable}: {exc.strerror or exc}") from None

        args.window = window
        return serve(args)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
