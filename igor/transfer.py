"""Transfers on a handler's stream: send a file or chunks to the client, receive an upload into a file.

The convention both clients' helpers follow (docs/protocol.md, "Transfers"):
a download is ``{"transfer": {"size", "name", "type"}}``, then each chunk as
a bare binary value, then the stream's close; an upload is bare binary
input, then the end of input. Sending waits for room in the client's
outbox (back-pressure), so a file of any size is sent in about
``send_queue_bytes`` of memory; each chunk is a fresh buffer, since the
socket is given it without a copy.
"""

from __future__ import annotations

import mimetypes
import os
from typing import IO, Any, Iterable, Optional, Union

from .exceptions import InputEnded

# The handler's stream (igor.stream imports this module): named, not imported.
Stream = Any

__all__ = ["send_file", "send_chunks", "receive_file", "CHUNK_SIZE", "FileLike"]

#: The default chunk of a transfer: 1 MiB.
CHUNK_SIZE = 1 << 20

FileLike = Union[str, "os.PathLike[str]", IO[bytes]]


def transfer_header(size: Optional[int], name: Optional[str], type: Optional[str]) -> dict:
    return {"transfer": {"size": size, "name": name, "type": type}}


def send_chunks(out: Stream, chunks: Iterable[Any], size: Optional[int] = None, name: Optional[str] = None,
                type: Optional[str] = None) -> int:
    """See :meth:`Stream.send_chunks <igor.Stream.send_chunks>`."""
    out.send(transfer_header(size, name, type))
    sent = 0
    for chunk in chunks:
        out.send(chunk)
        sent += memoryview(chunk).nbytes
    out.close()
    return sent


def send_file(out: Stream, source: FileLike, chunk_size: int = CHUNK_SIZE, name: Optional[str] = None,
              type: Optional[str] = None) -> int:
    """See :meth:`Stream.send_file <igor.Stream.send_file>`."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size is a positive number of bytes, not {chunk_size!r}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with open(path, "rb") as file:
            return send_file(out, file, chunk_size, name or os.path.basename(path),
                             type or mimetypes.guess_type(path)[0])
    try:
        size: Optional[int] = os.fstat(source.fileno()).st_size - source.tell()
    except (AttributeError, OSError, ValueError):
        size = None
    if name is None:
        file_name = getattr(source, "name", None)
        name = os.path.basename(file_name) if isinstance(file_name, str) else None
    return send_chunks(out, iter(lambda: source.read(chunk_size), b""), size, name, type)


def receive_file(out: Stream, target: FileLike, timeout: Optional[float] = None) -> int:
    """See :meth:`Stream.receive_file <igor.Stream.receive_file>`."""
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as file:
            return receive_file(out, file, timeout)
    received = 0
    while True:
        try:
            chunk = out.receive(timeout)
        except InputEnded:
            return received
        if not isinstance(chunk, bytes):
            raise TypeError(f"receive_file: the client sent a {type(chunk).__name__}, not bytes")
        target.write(chunk)
        received += len(chunk)
