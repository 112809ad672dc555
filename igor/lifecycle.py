"""Living as a child process: announce readiness, and die with the parent.

A desktop UI (Electron's main process, a Node script) spawns the server with
``--port 0`` and needs to learn the port and token without polling, and the
server must not outlive the UI when the UI crashes or is killed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

log = logging.getLogger("igor")

READY_PREFIX = "IGOR_READY "


def exit_code(code: Any) -> int:
    """``sys.exit(code)``'s code as a process exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    log.error("exit requested: %s", code)
    return 1


def announce_ready(url: str, port: int, token: Optional[str]) -> None:
    """Write the one machine-readable ready line to stdout and flush it."""
    line = READY_PREFIX + json.dumps({"url": url, "port": port, "token": token})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def stdin_is_pipe() -> bool:
    """True when stdin is a pipe or socket, as it is under a spawning parent."""
    try:
        import stat

        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def watch_parent(on_gone: Callable[[str], None], poll_interval: float = 0.5) -> threading.Event:
    """Call ``on_gone(reason)`` once stdin reaches end of file or the parent dies.

    Stdin EOF is the portable signal (Windows, macOS, Linux): the parent holds
    the write end of the pipe, and the OS closes it however the parent ends.
    The parent-pid check backs it up on POSIX for a parent that handed its
    pipe to another process. Set the returned event to stop watching.
    """
    stop = threading.Event()
    fired = threading.Lock()

    def fire(reason: str) -> None:
        if not stop.is_set() and fired.acquire(blocking=False):
            log.info("exiting with parent: %s", reason)
            on_gone(reason)

    def read_stdin() -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked
        # inside the buffered reader holds its lock, and the interpreter
        # aborts at exit when it cannot take that lock to close stdin.
        try:
            fd = sys.stdin.fileno()
            while os.read(fd, 65536):
                pass
        except (AttributeError, OSError, ValueError):
            pass
        fire("stdin closed")

    def poll_parent() -> None:
        parent = os.getppid()
        while not stop.wait(poll_interval):
            if os.getppid() != parent:
                fire("parent process is gone")
                return

    threading.Thread(target=read_stdin, name="igor-stdin-watch", daemon=True).start()
    if os.name == "posix":
        threading.Thread(target=poll_parent, name="igor-parent-watch", daemon=True).start()
    return stop
