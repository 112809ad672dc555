"""What the dispatcher keeps for one client: its streams, its shares of the bounds, the calls waiting on it.

A :class:`Peer` is the bookkeeping behind the invariants the
:mod:`~igor.dispatch` module states: the handlers and threads a client
holds, the parsed cost of what its messages hold, the server's calls
waiting for its answers, and how many of its mistakes have been logged.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Dict, Optional, Tuple

from .protocol import Reply
from .registry import ConnectedClient
from .stream import Stream

__all__ = ["Peer", "PendingCall", "COMPLAINTS_PER_WINDOW", "COMPLAINT_WINDOW"]

log = logging.getLogger("igor")

#: A client's mistakes logged per window; the rest are counted and told as "N more".
COMPLAINTS_PER_WINDOW = 5
COMPLAINT_WINDOW = 10.0


class PendingCall:
    """One of the server's calls to a client, waiting for its answer (or for the client to leave)."""

    __slots__ = ("done", "reply", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None


class Peer:
    """What the dispatcher keeps for one client: its streams, its shares, calls waiting on it.

    ``running`` counts handlers whose code has not returned (queued ones and
    cancelled ones included), ``threads`` the threads they hold or wait for,
    and ``held`` the parsed cost of the data they and the inboxes keep. Only
    the client's reader thread adds to them; anyone may give back.
    """

    def __init__(self, max_threads: int) -> None:
        self.lock = threading.Lock()
        self.streams: Dict[Any, Stream] = {}
        # Each running handler: what to call it in a warning, and whether it is async.
        self.running: Dict[Stream, Tuple[str, bool]] = {}
        self.threads = 0
        self.max_threads = max_threads
        self.held = 0
        self.calls: Dict[int, PendingCall] = {}
        self.call_ids = itertools.count(1)
        self.complaints = 0
        self.window_start = 0.0
        self.untold = 0

    # The Slots protocol, for an async handler's to_thread calls.
    def take_thread(self) -> bool:
        with self.lock:
            if self.threads >= self.max_threads:
                return False
            self.threads += 1
            return True

    def give_thread(self) -> None:
        with self.lock:
            self.threads -= 1

    def give(self, cost: int) -> None:
        with self.lock:
            self.held -= cost

    def ended(self, stream: Stream, cost: int, thread: bool) -> None:
        """A handler's code returned: its slot, its thread and its call data's cost are free."""
        with self.lock:
            self.running.pop(stream, None)
            self.held -= cost
            if thread:
                self.threads -= 1

    def complain(self, client: ConnectedClient, text: str, *args: Any) -> None:
        """Log a client's mistake: a few per window, the rest counted, so a flood of them is a few lines."""
        now = time.monotonic()
        if now - self.window_start > COMPLAINT_WINDOW:
            if self.untold:
                log.warning("client %r: %d more mistakes in %ds were not logged", client.id, self.untold,
                            int(COMPLAINT_WINDOW))
            self.window_start, self.complaints, self.untold = now, 0, 0
        if self.complaints < COMPLAINTS_PER_WINDOW:
            self.complaints += 1
            log.warning("client %r " + text, client.id, *args)
        else:
            self.untold += 1
