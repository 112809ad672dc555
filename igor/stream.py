"""What a handler holds: :class:`Stream`, its call's way back to the client and way in.

A :class:`Stream` is one call seen from its handler: the way back to the
client (``send``, ``send_error``, ``close``) and, when the client sends input
into the open call, the way in (``receive``, iteration). The dispatcher
creates and tracks streams; this module only knows the stream's own rules.
"""

from __future__ import annotations

# asyncio is imported where async handlers need it, not here: it adds about
# 8 MiB to every process, which an app with only sync handlers need not pay.
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Iterable, Iterator, List, Optional, Tuple, Union

from . import transfer
from .encoding import MessageEncoder, Payload, with_close
from .exceptions import BinaryUnsupported, InputEnded, InputTimeout, StreamCancelled, StreamClosed
from .executor import off_loop
from .frames import Frame, text_frame
from .protocol import StreamId, close_message, error_message
from .transfer import CHUNK_SIZE, FileLike

if TYPE_CHECKING:
    import asyncio

    from .registry import ConnectedClient

__all__ = ["Stream", "Encoder"]

#: Turns a server message (a dict) into the UTF-8 JSON payload of a text frame.
Encoder = MessageEncoder

# A last message up to this size is copied to join its close in one write.
_JOIN_LIMIT = 64 * 1024
# Sends closer together than this (seconds) are a burst, written in batches.
_BURST_GAP = 0.0002


class Stream:
    """The ``out`` a handler gets: one call's way back to its client, and its input.

    A stream sends any number of data messages, or an error, and closes once;
    the server closes it when the handler returns. After the client cancels
    or disconnects, :attr:`cancelled` is true and the next :meth:`send` (or
    :meth:`receive`) raises :class:`~igor.StreamCancelled`, which ends the
    handler quietly.
    """

    def __init__(self, client: ConnectedClient, stream_id: StreamId, encode: Encoder,
                 on_finish: Callable[[Stream], None], on_consumed: Callable[[int], None] = lambda size: None,
                 debug: bool = False):
        self.client = client
        self.stream_id = stream_id
        self._encode = encode
        self._on_finish = on_finish
        self._debug = debug
        self._lock = threading.Lock()
        self._closed = False
        self._last_send = 0.0
        self._data_prefix: Optional[bytes] = None
        self._cancelled = _Flag()
        # Input from the client: (value, size) pairs, guarded by the _input
        # lock; _input_ready is built on that lock by the first receiver to wait.
        self._input = threading.Lock()
        self._input_ready: Optional[threading.Condition] = None
        self._inbox: Deque[Tuple[Any, int]] = deque()
        self._input_ended = False
        self._taken = 0  # input values the handler has taken, for protocol 3's "read"
        # areceive() calls waiting for input: (their loop, a future to resolve).
        self._waiters: List[Tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        # Tells the dispatcher how many input bytes were read (or dropped), for its per-client bound.
        self._on_consumed = on_consumed
        # Set by the dispatcher for an async handler: cancels its task.
        self._on_cancel: Optional[Callable[[], Any]] = None

    # -- state ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the stream's close has been sent (or it was cancelled)."""
        return self._closed

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled the stream or went away."""
        return self._cancelled.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds; True at once if the stream is cancelled.

        Use it where a handler would ``time.sleep``, so a cancel stops it
        without waiting for the sleep to end.
        """
        return self._cancelled.wait(timeout)

    # -- output ---------------------------------------------------------------

    def send(self, data: Any = None) -> None:
        """Send one value to the client: any JSON value, with binary values (bytes, buffers) anywhere in it.

        Binary goes without a copy: the socket is given the buffer itself,
        maybe after this returns, so a ``bytearray`` or array once sent must
        not change (send a fresh one each time, as reading a file does). A client of protocol
        1 or 2 cannot take binary: the stream then fails with 415
        :class:`~igor.BinaryUnsupported`, which this raises.
        """
        self._emit(self._data_payload(data))

    def _data_payload(self, data: Any) -> Payload:
        prefix = self._data_prefix
        if prefix is None:
            prefix = self._data_prefix = self._encode.opening(self.stream_id) + b',"data":'
        try:
            return self._encode.data(prefix, data, self.client.protocol)
        except BinaryUnsupported as exc:
            self.fail(exc)  # the client hears why; the handler's send raises
            raise

    def _close_payload(self) -> bytes:
        """``{"streamId":S,"close":true}``, from the opening a stream that sent data has encoded already."""
        prefix = self._data_prefix
        opening = prefix[:-len(b',"data":')] if prefix is not None else self._encode.opening(self.stream_id)
        return opening + (b',"close":true}' if self.client.protocol >= 2 else b',"data":null,"close":true}')

    def send_error(self, error: Union[BaseException, str], code: Optional[int] = None,
                   traceback: Optional[str] = None, *, data: Any = None) -> None:
        """Send an error and close the stream.

        ``error`` is an exception (its class name becomes the ``type``) or a
        message; ``code`` defaults to the exception's own code, else 500; ``data``, a value the
        error carries (as :meth:`send`'s), to an :class:`~igor.IgorError`'s own ``data``.
        """
        message = error_message(error, self.stream_id, code, traceback if self._debug else None, data)
        self._emit(self._encode.for_client(message, self.client.protocol), then_close=True)

    def close(self) -> None:
        """End the stream; does nothing if it has already ended."""
        with self._lock:
            if self._closed:
                return
            self._finish(self._close_payload())

    # -- transfers (igor.transfer): a download's header and chunks, an upload into a file --

    def send_file(self, source: FileLike, chunk_size: int = CHUNK_SIZE, name: Optional[str] = None,
                  type: Optional[str] = None) -> int:
        """Send a file (a path or a binary file object) in chunks, then close; returns the bytes sent.

        First ``{"transfer": {"size", "name", "type"}}`` (from the file unless given), then each chunk
        as bare binary: the clients' ``download`` helpers show progress from it. Memory stays bounded
        whatever the size: each send waits for room in the client's outbox.
        """
        return transfer.send_file(self, source, chunk_size, name, type)

    def send_chunks(self, chunks: Iterable[Any], size: Optional[int] = None, name: Optional[str] = None,
                    type: Optional[str] = None) -> int:
        """:meth:`send_file` for any iterable of bytes-like chunks (``size``: their total, if known)."""
        return transfer.send_chunks(self, chunks, size, name, type)

    def receive_file(self, target: FileLike, timeout: Optional[float] = None) -> int:
        """Write each chunk the client uploads (bytes input, until it ends) to ``target``; returns the count."""
        return transfer.receive_file(self, target, timeout)

    def cancel(self) -> None:
        """The client cancelled or left: stop the handler and send the close at once."""
        self._abandon(close_message(self.stream_id, cancelled=True))

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` from the server's side (e.g. a flooded inbox).

        Like a cancel, the handler's next send or receive raises
        :class:`~igor.StreamCancelled`; the client gets the error, then the close.
        """
        self._abandon(error_message(error, self.stream_id), close_message(self.stream_id))

    def _abandon(self, *messages: dict) -> None:
        if self._closed:
            return
        # The event first: a handler blocked in a send (a client not reading)
        # sees it, gives up, and releases the lock taken below.
        self._cancelled.set()
        # Before waking receivers: an async handler waiting for input then
        # sees its task cancelled, not the input wait ending.
        if self._on_cancel is not None:
            self._on_cancel()
        with self._input:
            self._notify_input()
        with self._lock:
            if self._closed:
                return
            *first, last = [self._encode.for_client(message, self.client.protocol) for message in messages]
            for payload in first:
                self.client.send(text_frame(payload), False)
            # Never wait here: this runs on the connection's reader thread, or in a shutdown.
            self._finish(last, wait=False)

    def _send_last(self, data: Any) -> None:
        """Send a handler's return value and the close together (the dispatcher's fast path)."""
        self._emit(self._data_payload(data), then_close=True)

    def _emit(self, payload: Payload, then_close: bool = False) -> None:
        with self._lock:
            if self._cancelled.is_set():
                raise StreamCancelled(f"stream {self.stream_id!r} was cancelled")
            if self._closed:
                raise StreamClosed(f"stream {self.stream_id!r} is closed")
            if then_close and self.client.protocol >= 2:
                # One message for the last one and the close. The stream leaves
                # the table first, so its id is free once the close is seen.
                self._finish(None)
                sent = self.client.send(text_frame(with_close(payload)), True, self._cancelled)
            elif then_close:
                # The last message and the close leave in one write when small:
                # one system call, and the client reads both at once.
                frame = text_frame(payload)
                close = text_frame(self._close_payload())
                self._finish(None)
                if type(frame) is bytes and len(frame) <= _JOIN_LIMIT:
                    frame, close = frame + close, b""
                sent = self.client.send(frame, True, self._cancelled) and (
                    not close or self.client.send(close, True, self._cancelled))
            else:
                # A value right behind the last one is in a burst: let the
                # writer batch it. One after a pause goes out at once.
                now = time.monotonic()
                sent = self.client.send(text_frame(payload), True, self._cancelled, now - self._last_send < _BURST_GAP)
                self._last_send = now
            if not sent:
                self._cancelled.set()
                if not self._closed:
                    self._finish(None)
                raise StreamCancelled(f"stream {self.stream_id!r} was cancelled or its client is gone")

    def _finish(self, close_payload: Optional[Payload], wait: bool = True) -> None:
        # Called with the lock held, so the close is always the last message.
        self._closed = True
        self._on_finish(self)
        with self._input:
            consumed = sum(size for _, size in self._inbox) if self._inbox else 0
            self._inbox.clear()
        if consumed:
            self._on_consumed(consumed)
        if close_payload is not None:
            self.client.send(text_frame(close_payload), wait)

    # -- input ----------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> Any:
        """The next value the client sent into this call, waiting up to ``timeout`` seconds.

        Raises :class:`~igor.InputEnded` once the client has ended its input
        and every value has been read, :class:`~igor.StreamCancelled` when the
        client cancels or leaves, and :class:`~igor.InputTimeout` when
        ``timeout`` passes first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._input:
            while not self._take_ready():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise InputTimeout(f"no input on stream {self.stream_id!r} within {timeout}s")
                if self._input_ready is None:
                    self._input_ready = threading.Condition(self._input)
                self._input_ready.wait(remaining)
            value, size = self._inbox.popleft()
            self._taken += 1
            taken = self._taken
        self._on_consumed(size)
        if self.client.protocol >= 3:
            self._acknowledge(taken, True)
        return value

    def _acknowledge(self, taken: int, wait: Optional[bool]) -> Optional[bool]:
        """Tell a protocol 3 client how many inputs the handler has taken: ``{"streamId":S,"read":N}``.

        What paces an upload (see docs/protocol.md, "Paced input"). ``wait``
        as in :meth:`ConnectedClient.send <igor.registry.ConnectedClient.send>`: a handler's
        thread waits for room; the event loop does not.
        """
        if self._closed:
            return True
        return self.client.send(text_frame(self._encode.opening(self.stream_id) + b',"read":%d}' % taken), wait,
                                self._cancelled)

    def _take_ready(self) -> bool:
        """True if the inbox has a value; raises if none will come. Called with ``_input`` held."""
        if self._cancelled.is_set():
            raise StreamCancelled(f"stream {self.stream_id!r} was cancelled")
        if self._inbox:
            return True
        if self._input_ended:
            raise InputEnded(f"the client ended its input on stream {self.stream_id!r}")
        return False

    def _notify_input(self) -> None:
        """Wake every receiver, threads and tasks alike. Called with ``_input`` held."""
        if self._input_ready is not None:
            self._input_ready.notify_all()
        for loop, waiter in self._waiters:
            try:
                loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # its loop is closed: nobody waits any more
                pass
        self._waiters.clear()

    def __iter__(self) -> Iterator[Any]:
        """Each value the client sends, until it ends its input, cancels or leaves."""
        while True:
            try:
                yield self.receive()
            except (InputEnded, StreamCancelled):
                return

    # -- async counterparts, for ``async def`` handlers ------------------------
    # Every async handler shares one event loop, which must never block. A
    # send can wait for room (a client reading slowly), so it runs on a
    # thread; a receive waits on the loop itself, so that any number of
    # handlers can wait for input at no cost.

    async def asend(self, data: Any = None) -> None:
        """:meth:`send` for an ``async def`` handler."""

        payload = self._data_payload(data)
        if not self._emit_now(payload):
            await off_loop(self._emit, payload)

    async def aclose(self) -> None:
        """:meth:`close` for an ``async def`` handler."""

        if not self._lock.acquire(blocking=False):
            await off_loop(self.close)
            return
        try:
            if self._closed:
                return
            self._finish(None)
            frame = text_frame(self._close_payload())
            if self.client.send(frame, None) is not None:
                return
        finally:
            self._lock.release()
        await off_loop(self.client.send, frame)  # waits for room, as close() does

    async def _asend_last(self, data: Any) -> None:
        """:meth:`_send_last` for an async handler: its return value, and the close with it under protocol 2."""

        if self.client.protocol < 2:
            await self.asend(data)
            await self.aclose()
            return
        payload = self._data_payload(data)
        frame: Optional[Frame] = None
        if self._lock.acquire(blocking=False):
            try:
                if not self._closed and not self._cancelled.is_set():
                    self._finish(None)  # first, as in _emit: the id is free once the client sees the close
                    frame = text_frame(with_close(payload))
                    if self.client.send(frame, None, self._cancelled) is not None:
                        return  # sent, or the client is gone: either way nothing is left to do
            finally:
                self._lock.release()
        if frame is None:
            await off_loop(self._emit, payload, True)  # busy, closed or cancelled: _emit sorts it out
        else:
            await off_loop(self.client.send, frame, True, self._cancelled)  # waits for room

    def _emit_now(self, payload: Payload) -> bool:
        """Send ``payload`` if that needs no waiting; False, with nothing sent, if it would wait or fail.

        Most sends find room, and sending them from the loop's thread saves
        two thread switches each; :meth:`_emit` on a thread does the rest.
        """
        # Not acquired: a send of this stream is waiting on a thread; queue behind it there.
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed or self._cancelled.is_set():
                return False  # _emit raises the right error
            return bool(self.client.send(text_frame(payload), None, self._cancelled))
        finally:
            self._lock.release()

    async def areceive(self, timeout: Optional[float] = None) -> Any:
        """:meth:`receive` for an ``async def`` handler: the next input value, raising as it does."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._input:
                if self._take_ready():
                    value, size = self._inbox.popleft()
                    self._taken += 1
                    taken = self._taken
                    break
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
            try:
                done, _ = await asyncio.wait({waiter}, timeout=None if deadline is None else deadline - loop.time())
            finally:
                with self._input:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))
            if not done:
                with self._input:
                    if not self._take_ready():
                        raise InputTimeout(f"no input on stream {self.stream_id!r} within {timeout}s")
        self._on_consumed(size)
        if self.client.protocol >= 3 and self._acknowledge(taken, None) is None:
            await off_loop(self._acknowledge, taken, True)
        return value

    async def asleep(self, seconds: float) -> bool:
        """:meth:`wait` for an ``async def`` handler: sleep, True if the stream was cancelled.

        A cancel also cancels the handler's task, so the sleep usually ends
        with ``asyncio.CancelledError`` instead, which closes the stream quietly.
        """
        import asyncio

        await asyncio.sleep(seconds)
        return self.cancelled

    # Called by the dispatcher on the connection's reader thread.

    def _feed(self, value: Any, size: int, limit: int) -> bool:
        """Queue one input value; False if the inbox already holds ``limit`` values.

        Raises :class:`~igor.StreamClosed` when the stream closed meanwhile:
        :meth:`_finish` sets the flag before it empties the inbox under this
        lock, so no value can slip in after it and hold its bytes for ever.
        """
        with self._input:
            if self._closed:
                raise StreamClosed(f"stream {self.stream_id!r} is closed")
            if len(self._inbox) >= limit:
                return False
            self._inbox.append((value, size))
            self._notify_input()
            return True

    def _end_input(self) -> None:
        with self._input:
            self._input_ended = True
            self._notify_input()

    @property
    def accepts_input(self) -> bool:
        return not self._closed and not self._input_ended

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "closed" if self._closed else "open"
        return f"<Stream {self.stream_id!r} of client {self.client.id!r} {state}>"


class _Flag:
    """A one-way :class:`threading.Event` whose Condition is made only if somebody waits.

    Every call has one, to say it was cancelled, and almost none is waited
    on: an Event would build a Condition (Python code, about 1.5 us) per call.
    """

    __slots__ = ("_set", "_event", "_guard")

    def __init__(self) -> None:
        self._set = False
        self._event: Optional[threading.Event] = None
        self._guard = threading.Lock()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._guard:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        with self._guard:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
