"""One call of the Python client, as an iterator: :class:`ClientStream`.

The client's reader thread delivers what the server sends for the call
into the stream's inbox; the caller's thread iterates over it, and sends
input, the end of input or a cancel back through the client.

The inbox is bounded (:data:`MAX_STREAM_BUFFER` bytes, a stream's
:attr:`~ClientStream.max_buffer`): when the caller takes values more slowly
than they come, the reader waits for room before it reads the socket again,
so TCP fills, the server's backlog for this client fills and its
``out.send_file`` / ``send_chunks`` wait: the sender is paced by the
slowest consumer, with no change to the protocol. The price is
head-of-line blocking: while the reader waits, nothing else on the
connection (other streams, pushes, the server's calls, an upload's
``read``) is read either, until the caller takes a value, cancels, or
closes the client, each of which frees the reader at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterator, Optional, Protocol, Tuple

from .exceptions import CallTimeout, ConnectionClosed, StreamClosed
from .protocol import client_cancel_message, client_end_message, client_input_message

if TYPE_CHECKING:
    from .client_transfer import Pacer

__all__ = ["ClientStream", "StreamOwner", "CLOSED", "MAX_STREAM_BUFFER"]

log = logging.getLogger("igor.client")

#: What the reader delivers to a stream the server has closed.
CLOSED = object()
#: The bytes of values a stream's inbox holds before the reader waits for its caller: 8 MiB
#: (eight of a download's 1 MiB chunks). A single larger value is still taken, into an empty inbox.
MAX_STREAM_BUFFER = 8 << 20
# How often a reader waiting for room looks whether the client is closing.
_POLL = 0.05
# How often a reader waiting for room sends an unsolicited pong (RFC 6455 5.5.3: a heartbeat).
# The server's ping waits behind the data this client has not read, so it would come too late
# to answer within ``ping_timeout``: the pong says the client is alive (any frame but a ping
# does), and the server's ``send_timeout`` still finds a caller that takes nothing at all.
KEEPALIVE = 0.5
# What next() found when its wait timed out (None is a value like any other).
_NOTHING = object()


class StreamOwner(Protocol):
    """What a stream needs of its client (an :class:`~igor.client.IgorClient`): a way to send, and to let go of it."""

    #: Set by ``close()`` before anything else: a reader waiting for room stops waiting.
    _closing: bool
    #: The socket (a websocket-client ``WebSocket``), and the lock every send takes: for the keepalive pong.
    _ws: Any
    _send_lock: threading.Lock

    def _send(self, message: Dict[str, Any]) -> None: ...

    def _forget(self, stream_id: int) -> None: ...


def _weight(value: Any) -> int:
    """About the bytes ``value`` holds in memory: its bytes and strings, and 16 for each item.

    What the server sends is bytes (a download's chunks), or JSON, which
    holds little but its strings; a walk costs less than the decoding did.
    """
    total, todo = 0, [value]
    while todo:
        item = todo.pop()
        total += 16
        if isinstance(item, (bytes, bytearray, str)):
            total += len(item)
        elif isinstance(item, memoryview):
            total += item.nbytes
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return total


class ClientStream:
    """The values of one call, as an iterator; :meth:`cancel` stops it.

    Iterating raises :class:`~igor.RemoteError` if the server sends an error,
    :class:`~igor.ConnectionClosed` if the connection drops, and
    :class:`~igor.CallTimeout` if ``timeout`` seconds pass between values.
    Leaving a ``for`` loop over the stream before it ended (``break``, an
    exception) cancels the call on the server.

    :meth:`send` and :meth:`end` feed input to the handler while the call runs
    (it reads it with ``out.receive()`` or by iterating over ``out``).

    At most :attr:`max_buffer` bytes of values wait to be taken: past that the
    client reads nothing more from the connection until the caller takes one
    (see :mod:`igor.client_stream`). A caller that takes nothing for
    ``timeout`` seconds while the inbox is full has the stream cancelled, so
    that the rest of the connection goes on; its next value is then
    :class:`~igor.CallTimeout`.
    """

    def __init__(self, client: StreamOwner, stream_id: int, action: str, timeout: Optional[float],
                 whole: bool = False, deadline: Optional[float] = None):
        self.client = client
        self.stream_id = stream_id
        self.action = action
        self.timeout = timeout
        self.cancelled = False
        self.closed = False
        self.input_ended = False
        #: The bytes of values that may wait in the inbox (a value larger still comes alone).
        self.max_buffer = MAX_STREAM_BUFFER
        self._answered = False  # set by the reader once the server sent this stream's error or close
        # ``whole``: the timeout bounds the whole stream (call()), not each gap; ``deadline`` (a monotonic
        # time) when it began before the stream did, as for a call that waited for a reconnection.
        if whole and timeout is not None and deadline is None:
            deadline = time.monotonic() + timeout
        self._deadline = deadline if whole else None
        self._inbox: Deque[Tuple[Any, int]] = deque()  # values and their weights (see _weight)
        self._buffered = 0
        self._max_buffered = 0
        self._taken = 0  # values the caller has taken: a waiting reader sees the caller is alive
        self._failure: Optional[Exception] = None  # raised once by next() after the reader gave up
        self._beat = 0.0  # when a reader waiting for room last sent a keepalive pong
        self._changed = threading.Condition()
        #: An upload's bookkeeping of the server's ``read`` acknowledgements (see igor.client_transfer).
        self._pacer: Optional[Pacer] = None

    @property
    def buffered(self) -> int:
        """About the bytes of values that have arrived and wait for the caller to take them."""
        return self._buffered

    @property
    def max_buffered(self) -> int:
        """The most :attr:`buffered` has been: at most :attr:`max_buffer`, or one value larger than it."""
        return self._max_buffered

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                try:
                    item = next(self)
                except StopIteration:
                    return
                yield item
        finally:
            # Reached with the stream still open only when the caller left the
            # loop early: the server should stop working for nobody.
            self.cancel()

    def __next__(self) -> Any:
        if self.closed:
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure
            raise StopIteration
        wait = self.timeout
        if self._deadline is not None:
            wait = max(0.0, self._deadline - time.monotonic())
        with self._changed:
            if not self._changed.wait_for(lambda: self._inbox, wait):
                item = _NOTHING
            else:
                item, weight = self._inbox.popleft()
                self._buffered -= weight
                self._taken += 1
                self._changed.notify_all()  # a reader waiting for room
        if item is _NOTHING:
            self.cancel()
            if self._deadline is not None:
                raise CallTimeout(f"{self.action!r} did not finish within {self.timeout}s") from None
            raise CallTimeout(f"{self.action!r} sent nothing for {self.timeout}s") from None
        if item is CLOSED:
            self._end()
            raise StopIteration
        if isinstance(item, Exception):
            self._end()
            raise item
        return item

    def send(self, data: Any) -> None:
        """Send ``data`` as input to the running handler.

        Raises :class:`~igor.StreamClosed` once the stream has closed or its
        input has ended, :class:`~igor.ConnectionClosed` if the connection is
        gone. Input the server cannot take (a full inbox) fails the stream
        with a :class:`~igor.RemoteError` of code 429 on iteration.
        """
        self._check_input("send to")
        self.client._send(client_input_message(self.stream_id, data))

    def end(self) -> None:
        """Tell the handler no more input comes; the stream stays open until the handler finishes.

        Ending twice is a no-op; ending a closed stream raises :class:`~igor.StreamClosed`.
        """
        if self.input_ended and not self.closed:
            return
        self._check_input("end")
        self.input_ended = True
        self.client._send(client_end_message(self.stream_id))

    def cancel(self) -> None:
        """Ask the server to stop this stream; iteration ends at once. A no-op once it ended."""
        if self.closed:
            return
        self.cancelled = True
        self._end()
        try:
            self.client._send(client_cancel_message(self.stream_id))
        except ConnectionClosed:
            pass

    def _check_input(self, verb: str) -> None:
        if self.closed or self._answered:
            raise StreamClosed(f"cannot {verb} stream {self.stream_id} ({self.action!r}): it has closed")
        if self.input_ended:
            raise StreamClosed(f"cannot {verb} stream {self.stream_id} ({self.action!r}): its input has ended")

    def _end(self) -> None:
        with self._changed:
            self.closed = True
            # Nobody will take what is left: give its memory back, and free a reader waiting for room.
            self._inbox.clear()
            self._buffered = 0
            self._changed.notify_all()
        self.client._forget(self.stream_id)

    def _deliver(self, item: Any) -> None:
        """Put a value, :data:`CLOSED` or an error in the inbox.

        A value comes from the reader thread, which waits here while the
        inbox is full (see :meth:`_wait_for_room`); the end of the stream and
        errors (from any thread) never wait.
        """
        weight = 0 if item is CLOSED or isinstance(item, Exception) else _weight(item)
        with self._changed:
            if weight and not self._wait_for_room(weight):
                return
            self._inbox.append((item, weight))
            self._buffered += weight
            self._max_buffered = max(self._max_buffered, self._buffered)
            self._changed.notify_all()
        if self._pacer is not None:
            self._pacer.wake()  # an upload waiting for reads learns the stream has ended

    def _wait_for_room(self, weight: int) -> bool:
        """Wait, the lock held, until a value of ``weight`` fits; False to drop it instead.

        It is dropped once nobody will take it: the stream has ended, or the
        client is closing. A caller that takes nothing for ``timeout``
        seconds has the stream cancelled (:meth:`_give_up`).
        """
        taken, waited_since = self._taken, time.monotonic()
        while self._inbox and self._buffered + weight > self.max_buffer:
            if self.closed or self.client._closing:
                return False
            now = time.monotonic()
            if self._taken != taken:
                taken, waited_since = self._taken, now
            give_up = self.timeout is not None and now - waited_since >= self.timeout
            if give_up or now - self._beat >= KEEPALIVE:
                self._changed.release()  # the caller may take values meanwhile
                try:
                    if give_up:
                        self._give_up()
                        return False
                    self._beat = now
                    if not self._keepalive():
                        return not self.closed  # the connection is gone: read on, to learn how it ended
                finally:
                    self._changed.acquire()
                continue
            self._changed.wait(_POLL)  # woken by a take, a cancel or an end; the poll sees a close
        return not self.closed

    def _keepalive(self) -> bool:
        """Send the keepalive pong; False if the connection is gone."""
        try:
            with self.client._send_lock:
                self.client._ws.pong(b"")
        except Exception as exc:  # websocket-client's errors or an OSError: either way the socket is done
            log.debug("keepalive pong not sent: %s", exc)
            return False
        return True

    def _give_up(self) -> None:
        """The caller took nothing for ``timeout`` seconds: cancel, so the connection is read again."""
        log.warning("stream %s (%r): its caller took no value for %ss with %d bytes waiting; cancelling it",
                    self.stream_id, self.action, self.timeout, self._buffered)
        self._failure = CallTimeout(f"{self.action!r}: no value was taken for {self.timeout}s while "
                                    f"{self._buffered} bytes waited; cancelled so the connection goes on")
        self.cancel()

    def _on_read(self, count: Any) -> None:
        """The server's ``{"streamId": S, "read": N}``: ignored unless an upload paces this stream."""
        if self._pacer is not None:
            self._pacer.on_read(count)
