"""Background processes: threads that push to clients on their own schedule, and read what clients send them."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, NamedTuple, Optional

if TYPE_CHECKING:
    from .registry import ClientId
    from .server import IgorServer
    from .stream import ProcessOutput

__all__ = ["IgorProcess", "Inbound"]


class Inbound(NamedTuple):
    """One message a client sent to a process: who sent it, and what."""

    client_id: ClientId
    data: Any


class IgorProcess(threading.Thread):
    """A ``threading.Thread`` the server can ask to stop, with an inbox clients can send to.

    Subclass it and write :meth:`run`; use :meth:`wait` where you would sleep,
    so a shutdown ends the loop at once, and :meth:`receive` to read what
    clients send (``{"process": id, "data": ...}`` on the wire)::

        class Clock(IgorProcess):
            def run(self):
                while not self.wait(1.0):
                    self.output.send('tick', time.time())

    ``process_id``, ``output``, ``scope`` and ``server`` are filled in by
    :meth:`IgorServer.add_process <igor.IgorServer.add_process>`. Any plain
    ``threading.Thread`` works as a process too; this class adds the stop
    request and the inbox.
    """

    #: Unread messages the inbox holds; one more is refused with 429 (the server sets it from ``inbox_size``).
    inbox_size = 100

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("daemon", True)
        super().__init__(*args, **kwargs)
        self.process_id: Optional[str] = None
        self.output: Optional[ProcessOutput] = None
        self.scope: Optional[Dict[str, Any]] = None
        self.server: Optional[IgorServer] = None
        self._stop_requested = threading.Event()
        self._inbox: Deque[Inbound] = deque()
        self._inbox_ready = threading.Condition(threading.Lock())

    def stop(self) -> None:
        """Ask the process to stop; :meth:`wait` returns True from now on."""
        self._stop_requested.set()
        with self._inbox_ready:
            self._inbox_ready.notify_all()

    @property
    def stopping(self) -> bool:
        """True once the server (or anyone) asked this process to stop."""
        return self._stop_requested.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as a stop is requested."""
        return self._stop_requested.wait(timeout)

    def receive(self, timeout: Optional[float] = None) -> Optional[Inbound]:
        """The next message a client sent: ``(client_id, data)``; None on timeout or once stopping."""
        with self._inbox_ready:
            if not self._inbox_ready.wait_for(lambda: self._inbox or self.stopping, timeout) or not self._inbox:
                return None
            return self._inbox.popleft()

    def deliver(self, client_id: ClientId, data: Any) -> bool:
        """Put a client's message in the inbox (the server does this); False when it is full."""
        with self._inbox_ready:
            if len(self._inbox) >= self.inbox_size:
                return False
            self._inbox.append(Inbound(client_id, data))
            self._inbox_ready.notify()
            return True
