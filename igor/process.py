"""Background processes: threads that push to clients on their own schedule, and read what clients send them.

Everything about processes lives here: :class:`IgorProcess` (a thread with a
stop request and an inbox), :class:`ProcessOutput` (its way to clients), and
:class:`Processes`, the server's table of them, which starts, guards, stops
them and routes clients' input into their inboxes.

An inbox is bounded per sending client: each client may have at most
``inbox_size`` unread messages in it, and what they hold counts against that
client's memory budget until the process reads them. So one client flooding
a process that does not read is refused alone, and everyone else's messages
still get in; a client's unread messages are dropped when it disconnects,
and every message when the process ends.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple, Union

from .binary import Binary
from .config import Config
from .encoding import MessageEncoder
from .exceptions import BinaryUnsupported, IgorError, InboxFull, UnknownProcess
from .frames import Frame, text_frame
from .lifecycle import exit_code
from .protocol import close_message, error_message, push_message

if TYPE_CHECKING:
    from .registry import ClientId, ClientRegistry, ConnectedClient

__all__ = ["IgorProcess", "Inbound", "ProcessOutput", "Processes"]

log = logging.getLogger("igor")


class Inbound(NamedTuple):
    """One message a client sent to a process: who sent it, and what."""

    client_id: ClientId
    data: Any


class ProcessOutput:
    """A background process's way to reach clients: everyone, or one client id."""

    def __init__(self, registry: ClientRegistry, process_id: str, encode: MessageEncoder):
        self.registry = registry
        self.process_id = process_id
        self._encode = encode
        self._skipped: weakref.WeakSet[ConnectedClient] = weakref.WeakSet()

    def send(self, action: str, data: Any = None, client_id: Optional[ClientId] = None) -> None:
        """Push ``{"streamId": process_id, "action": action, "data": data}``.

        Without ``client_id`` it goes to every connected client; with one, only
        to that client, and :class:`~igor.UnknownClient` if none has that id.
        """
        self._deliver(push_message(self.process_id, action, data), client_id)

    def send_error(self, error: Union[BaseException, str], code: Optional[int] = None,
                   client_id: Optional[ClientId] = None, *, data: Any = None) -> None:
        """Report a failure of this process to every client, or to one.

        ``data`` is a value the error carries, as :meth:`send`'s (an :class:`~igor.IgorError`'s own
        ``data`` by default); a client of protocol 1 or 2 gets the error without binary data.
        """
        self._deliver(error_message(error, self.process_id, code, data=data), client_id)

    def finish(self, client_id: Optional[ClientId] = None) -> None:
        """Tell clients this process has finished its work."""
        self._deliver(close_message(self.process_id), client_id)

    def _deliver(self, message: dict, client_id: Optional[ClientId]) -> None:
        # One frame object for every client: a broadcast to clients that do
        # not read is held once in memory, not once per client.
        frames: Dict[int, Optional[Frame]] = {}

        def frame(protocol: int) -> Optional[Frame]:
            # A close or an error reads differently under protocol 1 (see for_protocol), even an error
            # with data (left out when it cannot go, see for_client); binary goes only to protocol 3:
            # one frame per version, None for a version that cannot carry it.
            reads_as_2 = "data" in message and "error" not in message
            version = 3 if protocol >= 3 else 2 if protocol >= 2 or reads_as_2 else 1
            if version not in frames:
                try:
                    payload = self._encode.for_client(message, version)
                except BinaryUnsupported:
                    frames[version] = None
                else:
                    frames[version] = text_frame(payload)
                    if version == 3 and not isinstance(payload, Binary):
                        frames[2] = frames[3]  # the same JSON
            return frames[version]

        clients = self.registry.clients() if client_id is None else [self.registry.get(client_id)]
        for client in clients:
            pushed = frame(client.protocol)
            if pushed is None:
                self._skip(client)
                continue
            # wait=False: a slow client is disconnected rather than stalling the process.
            # batch=True: pushes come in bursts; the writer sends each client's in few system calls.
            client.send(pushed, False, None, True)

    def _skip(self, client: ConnectedClient) -> None:
        """A push with binary values does not go to a client of protocol 1 or 2: say so once per client."""
        if client not in self._skipped:
            self._skipped.add(client)
            log.warning("process %r: client %r speaks protocol %d, which cannot carry binary data; "
                        "its pushes with binary values are skipped", self.process_id, client.id, client.protocol)


# What the inbox keeps of each message besides the Inbound: its cost, who
# sent it (the connection, not the id, which another may take), and how to
# give the cost back to that sender's budget.
_Entry = Tuple[Inbound, int, Any, Optional[Callable[[int], None]]]


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

    #: Unread messages the inbox holds from each sending client; one more is refused with 429
    #: (the server sets it from ``inbox_size``).
    inbox_size = Config.inbox_size

    # Filled in by add_process; typed as set, so that a subclass's run() can use them without checks.
    process_id: str
    output: ProcessOutput
    scope: Dict[str, Any]
    # The IgorServer: Any, because the server imports this module and a module
    # the server is made of must not depend on the server back.
    server: Any

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("daemon", True)
        super().__init__(*args, **kwargs)
        self._stop_requested = threading.Event()
        self._inbox: Deque[_Entry] = deque()
        self._unread: Dict[Any, int] = {}  # sender -> its messages in the inbox
        self._inbox_ready = threading.Condition(threading.Lock())
        self._ended = False

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
            entry = self._inbox.popleft()
            self._count_out(entry[2])
        _give_back(entry)
        return entry[0]

    def deliver(self, client_id: ClientId, data: Any, cost: int = 0, sender: Any = None,
                release: Optional[Callable[[int], None]] = None) -> bool:
        """Put a client's message in the inbox (the server does this); False when that sender's share is full.

        ``release(cost)`` is called once the message leaves the inbox, read or dropped.
        """
        sender = client_id if sender is None else sender
        with self._inbox_ready:
            if self._ended or self._unread.get(sender, 0) >= self.inbox_size:
                return False
            self._inbox.append((Inbound(client_id, data), cost, sender, release))
            self._unread[sender] = self._unread.get(sender, 0) + 1
            self._inbox_ready.notify()
            return True

    def _drop(self, sender: Any = None) -> None:
        """Drop the unread messages of ``sender`` (it left), or all of them (the process ended)."""
        with self._inbox_ready:
            if sender is None:
                self._ended = True
                dropped = list(self._inbox)
                self._inbox.clear()
                self._unread.clear()
            elif sender not in self._unread:
                return
            else:
                dropped = [entry for entry in self._inbox if entry[2] is sender]
                self._inbox = deque(entry for entry in self._inbox if entry[2] is not sender)
                del self._unread[sender]
        for entry in dropped:
            _give_back(entry)

    def _count_out(self, sender: Any) -> None:
        left = self._unread[sender] - 1
        if left:
            self._unread[sender] = left
        else:
            del self._unread[sender]


def _give_back(entry: _Entry) -> None:
    _, cost, _, release = entry
    if release is not None and cost:
        release(cost)


class Processes:
    """The server's processes by id: started with it, guarded, stopped with it, fed by clients."""

    def __init__(self, registry: ClientRegistry, encode: MessageEncoder, scope: Dict[str, Any], server: Any,
                 inbox_size: int, on_exit: Callable[[int], None]):
        self._registry = registry
        self._encode = encode
        self._scope = scope
        self._server = server
        self._inbox_size = inbox_size
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._threads: Dict[str, threading.Thread] = {}

    def add(self, process_id: str, thread: threading.Thread, start: bool) -> threading.Thread:
        if not isinstance(thread, threading.Thread):
            raise TypeError(f"a process must be a threading.Thread, got {type(thread).__name__}")
        if not isinstance(process_id, str) or not process_id:
            # Strings only: clients number their own streams with integers,
            # and a push's streamId must never be mistaken for one of them.
            raise ValueError("a process id must be a non-empty string")
        with self._lock:
            if process_id in self._threads:
                raise ValueError(f"a process with id {process_id!r} already exists")
            self._threads[process_id] = thread
        thread.process_id = process_id
        thread.output = ProcessOutput(self._registry, process_id, self._encode)
        thread.scope = self._scope
        thread.server = self._server
        thread.inbox_size = self._inbox_size
        thread.daemon = True
        thread.run = self._guard(process_id, thread, thread.run)
        if start:
            thread.start()
        return thread

    def __iter__(self):
        with self._lock:
            return iter(list(self._threads.values()))

    def mapping(self) -> Dict[str, threading.Thread]:
        """The live table, as ``server.processes`` shows it."""
        return self._threads

    def start(self) -> None:
        for thread in self:
            thread.start()

    def stop(self) -> None:
        """Ask each process that can be asked to stop."""
        for thread in self:
            if callable(getattr(thread, "stop", None)):
                thread.stop()

    def join(self, deadline: float) -> List[str]:
        """Wait until ``deadline`` for every process; returns the ids of those still running."""
        left = []
        for thread in self:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    left.append(thread.process_id)
        return left

    def deliver(self, client: ConnectedClient, process_id: str, data: Any, cost: int,
                release: Callable[[int], None]) -> Optional[IgorError]:
        """Put a client's message in a process's inbox; the error to answer with, or None."""
        with self._lock:
            thread = self._threads.get(process_id)
        deliver = getattr(thread, "deliver", None)
        if not callable(deliver):
            return UnknownProcess(f"no process {process_id!r} takes input")
        # Ended: its thread is gone, or its run() has returned and the guard is dropping its inbox.
        if (thread.ident is not None and not thread.is_alive()) or getattr(thread, "_ended", False):
            return UnknownProcess(f"process {process_id!r} has ended")
        if not deliver(client.id, data, cost, client, release):
            return InboxFull(f"process {process_id!r} holds {thread.inbox_size} unread messages from this client")
        return None

    def forget(self, client: ConnectedClient) -> None:
        """A client left: drop what it sent that no process has read."""
        for thread in self:
            if isinstance(thread, IgorProcess):
                thread._drop(client)

    def owns(self, thread: threading.Thread) -> bool:
        with self._lock:
            return thread in self._threads.values()

    def _guard(self, process_id: str, thread: threading.Thread, run: Callable[[], None]) -> Callable[[], None]:
        def guarded_run() -> None:
            try:
                run()
            except SystemExit as exc:
                self._on_exit(exit_code(exc.code))
            except Exception as exc:
                log.exception("process %r failed", process_id)
                try:
                    thread.output.send_error(exc)
                except Exception:
                    log.exception("could not report the failure of process %r", process_id)
            finally:
                if isinstance(thread, IgorProcess):
                    thread._drop()  # nobody will read it now

        return guarded_run
