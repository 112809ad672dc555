"""What waits to be written to one client's socket: the bounded backlog of a :class:`~igor.connection.Connection`.

Frames go to the socket straight away while it takes them; those it does
not take yet wait here, for the connection's writer thread. The outbox is
bounded in frames and in bytes, holds at most one pong (a newer ping's pong
replaces one not yet written) and the close frame that goes after
everything else, and keeps the rest of a frame the socket took only part
of at its head, so that whatever is freed, the bytes on the wire stay
whole frames.

Not thread-safe on its own: the connection calls it with its lock held,
the lock that also says who may write to the socket.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Tuple, Union

from .frames import Frame, frame_size

__all__ = ["Outbox", "Chunk", "BATCH_BYTES"]

#: A piece of a frame, as the socket is given it.
Chunk = Union[bytes, memoryview]
#: Bytes of frames the writer takes for one system call.
BATCH_BYTES = 1 << 20

_Queued = Union[Chunk, Tuple[Chunk, ...]]


class Outbox:
    """The frames waiting for one socket, bounded in number and in bytes, with a pong slot and a close frame."""

    def __init__(self, frame_limit: int, byte_limit: int):
        self._frame_limit = frame_limit
        self._byte_limit = byte_limit
        # Whole frames, except that the first may be the rest of one partly written (then _head_partial).
        self._frames: Deque[_Queued] = deque()
        self._bytes = 0
        self._head_partial = False
        self._pong: Optional[bytes] = None
        #: The close frame (or what the socket has not taken of it), written once the frames are.
        self.close_frame: Optional[bytes] = None

    def has_room(self, frame: Frame) -> bool:
        """Whether ``frame`` fits; an empty outbox takes any frame, however large."""
        return not self._frames or (len(self._frames) < self._frame_limit
                                    and self._bytes + frame_size(frame) <= self._byte_limit)

    def append(self, frame: _Queued) -> None:
        self._frames.append(frame)
        self._bytes += frame_size(frame)

    def append_unsent(self, frame: Frame, sent: int) -> None:
        """Queue what is left of ``frame`` once the socket took its first ``sent`` bytes (into an empty outbox)."""
        self.append(_unsent(frame, sent) if sent else frame)
        self._head_partial = sent > 0

    def replace_pong(self, frame: bytes) -> None:
        """Hold ``frame`` as the pong to write next, in place of any not yet written: at most one is ever pending."""
        self._pong = frame

    def is_empty(self) -> bool:
        return not self._frames and self._pong is None and self.close_frame is None

    def take(self) -> Tuple[List[Chunk], bool]:
        """The next batch to write (the pong, then up to :data:`BATCH_BYTES` of frames), and whether it is the close.

        The close frame comes alone, once nothing else is left. An empty
        batch means there is nothing to write.
        """
        batch: List[Chunk] = []
        size = 0
        if self._pong is not None:
            batch.append(self._pong)
            self._pong = None
        while self._frames and size < BATCH_BYTES:
            frame = self._frames.popleft()
            if type(frame) is tuple:
                batch.extend(frame)
            else:
                batch.append(frame)
            size += frame_size(frame)
        self._head_partial = False  # the batch is written whole before the next is taken
        self._bytes -= size
        closing = not batch and self.close_frame is not None
        if closing:
            batch.append(self.close_frame)
            self.close_frame = None
        return batch, closing

    def discard(self) -> None:
        """Drop every frame: the socket will not take them."""
        self._frames.clear()
        self._bytes = 0

    def free(self) -> None:
        """Drop the frames a slow consumer will never read, but the rest of one partly written.

        Freed now, not when the close times out seconds later, or clients that
        stop reading one after another each hold a different
        ``send_queue_bytes`` of broadcasts. The partial frame stays so that
        the close frame follows whole frames.
        """
        head = self._frames[0] if self._frames and self._head_partial else None
        self.discard()
        if head is not None:
            self._frames.append(head)
            self._bytes = frame_size(head)


def _unsent(frame: Frame, sent: int) -> Tuple[Chunk, ...]:
    """What is left of ``frame`` once its first ``sent`` bytes are on the wire."""
    rest: List[Chunk] = []
    for part in (frame,) if type(frame) is bytes else frame:
        if sent >= len(part):
            sent -= len(part)
        else:
            rest.append(memoryview(part)[sent:] if sent else part)
            sent = 0
    return tuple(rest)
