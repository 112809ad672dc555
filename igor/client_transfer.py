"""The Python client's transfers: :func:`upload` into a handler, paced by its reads, and :func:`download`.

An upload calls the action, then sends the source in chunks as bare binary
input, never more unread than the server's hello allows (half its
``inbox_size`` messages, ``input_window`` bytes), so however slowly the
handler reads it never meets 429 ``InboxFull`` and the server holds no more
than that. Progress is what the handler has read, from the server's
``{"streamId": S, "read": N}``. A download reads what ``out.send_file`` /
``out.send_chunks`` send: a ``{"transfer": {...}}`` header, then chunks,
each handed to ``to`` as it is taken; a sink slower than the network paces
the server through the stream's bounded inbox (see :mod:`igor.client_stream`),
so the client holds at most ``max_buffer`` bytes of them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import IO, Any, Callable, Deque, Iterable, Iterator, Optional, Union

from .binary import HEAD_ROOM
from .exceptions import BinaryUnsupported, CallTimeout, StreamCancelled

# The client and its streams (igor.client, igor.client_stream) import this module: named, not imported.
IgorClient = Any
ClientStream = Any

__all__ = ["upload", "download", "Progress", "CHUNK_SIZE", "Pacer"]

#: The default chunk of an upload: 1 MiB.
CHUNK_SIZE = 1 << 20
#: ``on_progress(done, total)``: bytes done, and the total (None when not known).
Progress = Callable[[int, Optional[int]], None]
Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes], Iterable[bytes]]
# How often a waiting upload looks at its cancel event.
_POLL = 0.05


class Pacer:
    """One upload stream's reads: how many input messages the handler has taken (``read``), and their bytes."""

    def __init__(self, stream: ClientStream) -> None:
        self.stream = stream
        self.sent = 0
        self.read = 0
        self.read_bytes = 0
        self._sizes: Deque[int] = deque()  # the sizes of the messages sent and not read yet
        self.unread_bytes = 0
        self._changed = threading.Condition()

    def on_read(self, count: Any) -> None:
        """The server's ``read``: from the client's reader thread."""
        if isinstance(count, bool) or not isinstance(count, int):
            return
        with self._changed:
            while self.read < count and self._sizes:
                size = self._sizes.popleft()
                self.read += 1
                self.read_bytes += size
                self.unread_bytes -= size
            self._changed.notify_all()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def sending(self, size: int) -> None:
        with self._changed:
            self.sent += 1
            self._sizes.append(size)
            self.unread_bytes += size

    def wait_room(self, size: int, max_unread: int, window: int, timeout: Optional[float],
                  cancel: Optional[threading.Event], on_progress: Optional[Progress], total: Optional[int]) -> None:
        """Wait until one more message of ``size`` bytes keeps the stream within its bounds; report progress."""
        deadline = None if timeout is None else time.monotonic() + timeout
        reported = -1
        with self._changed:
            while True:
                if self.read_bytes != reported and on_progress is not None:
                    reported = self.read_bytes
                    self._changed.release()
                    try:
                        on_progress(reported, total)
                    finally:
                        self._changed.acquire()
                if cancel is not None and cancel.is_set():
                    raise StreamCancelled(f"upload to {self.stream.action!r} cancelled")
                if self.stream.closed or self.stream._answered:
                    return  # the handler is done: what it answered comes from the stream
                unread = self.sent - self.read
                if unread == 0 or (unread < max_unread and self.unread_bytes + size <= window):
                    return
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise CallTimeout(f"{self.stream.action!r} read no input for {timeout}s")
                self._changed.wait(_POLL if deadline is None else min(_POLL, deadline - now))


def _chunks(source: Source, chunk_size: int) -> Iterator[bytes]:
    """The source's bytes in chunks of at most ``chunk_size``, read as they are sent."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), chunk_size):
            yield view[start:start + chunk_size]  # type: ignore[misc]  # a view: no copy here
        return
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            yield from _chunks(file, chunk_size)
        return
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if not chunk:
                return
            yield chunk
    for item in source:
        view = memoryview(item).cast("B")
        for start in range(0, len(view), chunk_size):
            yield view[start:start + chunk_size]  # type: ignore[misc]  # a view: bytes-like, not bytes


def _total(source: Source) -> Optional[int]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return memoryview(source).nbytes
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    file: Any = source
    try:
        size: int = os.fstat(file.fileno()).st_size - file.tell()
        return size
    except (AttributeError, OSError, ValueError):
        return None


def upload(client: IgorClient, action: str, source: Source, data: Any = None, *, chunk_size: int = CHUNK_SIZE,
           on_progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None,
           size: Optional[int] = None, timeout: Optional[float] = None) -> Any:
    """See :meth:`IgorClient.upload <igor.client.IgorClient.upload>`."""
    if client.protocol < 3:
        raise BinaryUnsupported(f"the server speaks protocol {client.protocol}: uploads need igor.v3")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size is a positive number of bytes, not {chunk_size!r}")
    hello = client.hello
    chunk_size = min(chunk_size, max(1, int(hello.get("max_message_size", 16 << 20)) - HEAD_ROOM))
    max_unread = max(1, int(hello.get("inbox_size", 100)) // 2)
    window = int(hello.get("input_window", 4 << 20))
    total = _total(source) if size is None else size
    stream = client.stream(action, data, timeout=timeout)
    pacer = stream._pacer = Pacer(stream)
    _watch(stream, cancel)
    try:
        for chunk in _chunks(source, chunk_size):
            pacer.wait_room(len(chunk), max_unread, window, timeout, cancel, on_progress, total)
            if stream.closed or stream._answered:
                break  # the handler answered before the end (an error, or it read no more)
            pacer.sending(len(chunk))
            stream.send(chunk)
        else:
            stream.end()
        result = None
        for value in _values(stream, cancel):
            result = value
    except BaseException:
        stream.cancel()
        raise
    if on_progress is not None:
        on_progress(pacer.read_bytes, total)
    return result


def _values(stream: ClientStream, cancel: Optional[threading.Event]) -> Iterator[Any]:
    """The stream's values, checking ``cancel`` between them."""
    while True:
        if cancel is not None and cancel.is_set():
            raise StreamCancelled(f"transfer of {stream.action!r} cancelled")
        try:
            yield next(stream)
        except StopIteration:
            return


def download(client: IgorClient, action: str, data: Any = None, *, to: Union[str, os.PathLike[str], IO[bytes],
             None] = None, on_progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None,
             timeout: Optional[float] = None) -> Union[bytes, int]:
    """See :meth:`IgorClient.download <igor.client.IgorClient.download>`."""
    if isinstance(to, (str, os.PathLike)):
        with open(to, "wb") as file:
            return download(client, action, data, to=file, on_progress=on_progress, cancel=cancel,
                            timeout=timeout)
    parts = []
    done, total = 0, None
    stream = client.stream(action, data, timeout=timeout)
    _watch(stream, cancel)
    try:
        for value in _values(stream, cancel):
            if isinstance(value, dict) and isinstance(value.get("transfer"), dict):
                total = value["transfer"].get("size")
                total = total if isinstance(total, int) and not isinstance(total, bool) else None
            elif isinstance(value, bytes):
                if to is None:
                    parts.append(value)
                else:
                    to.write(value)
                done += len(value)
            else:
                raise TypeError(f"download: {action!r} sent a {type(value).__name__}, not bytes")
            if on_progress is not None:
                on_progress(done, total)
    except BaseException:
        stream.cancel()
        raise
    return b"".join(parts) if to is None else done


def _watch(stream: ClientStream, cancel: Optional[threading.Event]) -> None:
    """Cancel ``stream`` as soon as ``cancel`` is set, even while its caller waits for a value."""
    if cancel is None:
        return

    def watch() -> None:
        while not stream.closed:
            if cancel.wait(_POLL):
                stream.cancel()
                stream._deliver(StreamCancelled(f"transfer of {stream.action!r} cancelled"))
                return

    threading.Thread(target=watch, daemon=True, name="igor-client-cancel").start()
