"""One call of the Python client, as an iterator: :class:`ClientStream`.

The client's reader thread delivers what the server sends for the call
into the stream's inbox; the caller's thread iterates over it, and sends
input, the end of input or a cancel back through the client.
"""

from __future__ import annotations

import queue
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Protocol

from .exceptions import CallTimeout, ConnectionClosed, StreamClosed
from .protocol import client_cancel_message, client_end_message, client_input_message

if TYPE_CHECKING:
    from .client_transfer import Pacer

__all__ = ["ClientStream", "StreamOwner", "CLOSED"]

#: What the reader delivers to a stream the server has closed.
CLOSED = object()


class StreamOwner(Protocol):
    """What a stream needs of its client (an :class:`~igor.client.IgorClient`): a way to send, and to let go of it."""

    def _send(self, message: Dict[str, Any]) -> None: ...

    def _forget(self, stream_id: int) -> None: ...


class ClientStream:
    """The values of one call, as an iterator; :meth:`cancel` stops it.

    Iterating raises :class:`~igor.RemoteError` if the server sends an error,
    :class:`~igor.ConnectionClosed` if the connection drops, and
    :class:`~igor.CallTimeout` if ``timeout`` seconds pass between values.
    Leaving a ``for`` loop over the stream before it ended (``break``, an
    exception) cancels the call on the server.

    :meth:`send` and :meth:`end` feed input to the handler while the call runs
    (it reads it with ``out.receive()`` or by iterating over ``out``).
    """

    def __init__(self, client: StreamOwner, stream_id: int, action: str, timeout: Optional[float],
                 whole: bool = False):
        self.client = client
        self.stream_id = stream_id
        self.action = action
        self.timeout = timeout
        self.cancelled = False
        self.closed = False
        self.input_ended = False
        self._answered = False  # set by the reader once the server sent this stream's error or close
        # ``whole``: the timeout bounds the whole stream (call()), not each gap.
        self._deadline = time.monotonic() + timeout if whole and timeout is not None else None
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: An upload's bookkeeping of the server's ``read`` acknowledgements (see igor.client_transfer).
        self._pacer: Optional[Pacer] = None

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
            raise StopIteration
        wait = self.timeout
        if self._deadline is not None:
            wait = max(0.0, self._deadline - time.monotonic())
        try:
            item = self._inbox.get(timeout=wait)
        except queue.Empty:
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
        self.closed = True
        self.client._forget(self.stream_id)

    def _deliver(self, item: Any) -> None:
        self._inbox.put(item)
        if self._pacer is not None:
            self._pacer.wake()  # an upload waiting for reads learns the stream has ended

    def _on_read(self, count: Any) -> None:
        """The server's ``{"streamId": S, "read": N}``: ignored unless an upload paces this stream."""
        if self._pacer is not None:
            self._pacer.on_read(count)
