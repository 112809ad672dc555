"""Igor against stock websocket-server, side by side in one run.

Each server runs in a process of its own on 127.0.0.1, as it does in real use
(the UI is another process), so the client never competes with the server for
this process's GIL; every measurement is made twice, with the same client for
both servers each time:

- a lean raw-socket client (``RawClient`` below): the handshake on a plain
  socket, the masked request frames built *before* the clock starts, one
  ``sendall`` per request, and the replies read raw (header parsed, payload
  read with ``recv_into`` into a preallocated buffer) and checked only after
  the clock stops. Its own cost per message is a few system calls, so the
  rows it gives are about the servers;
- ``websocket-client`` (the colleague's original rows, kept as they were):
  its pure-Python JSON, UTF-8 and masking work on 10 MB is about 100 ms per
  round trip, the same for both servers, and it dominates the result.

What is measured:

- a 10 MB text message round trip, through Igor's transport alone (the text
  echoed by a subclass overriding the per-message hook: no JSON, no action,
  no worker thread) and through a real Igor call (the ``echo`` action: JSON
  both ways, a worker thread, a data message and the stream's close), both
  against the stock server echoing the text from ``message_received``;
- small calls per second on one connection: an Igor call (one message out,
  data + close back), Igor's transport echo, and the stock echo.

Run: ``python bench/roundtrip.py`` (about 15 s; ``--quick`` for a smoke run
under 10 s). Not part of the test suite: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import List, Tuple

import websocket
from websocket_server import WebsocketServer

from igor import IgorServer

BIG = 10 * 1024 * 1024


def big_text(size: int) -> str:
    """Text with some multi-byte characters (one in ten), which makes UTF-8 decoding slower."""
    return ("Igor bench 0123456789 é ✓ " * (size // 20 + 1)).encode("utf-8")[:size].decode("utf-8", "ignore")


def big_ascii(size: int) -> str:
    """ASCII text, as JSON from json.dumps (which escapes non-ASCII by default) is."""
    return ('{"id": 12345, "name": "Igor bench", "tags": ["a", "b"]} ' * (size // 56 + 1))[:size]


# -- servers ----------------------------------------------------------------

def start_igor() -> IgorServer:
    def echo(out, data):
        return data

    server = IgorServer({"echo": echo}, {"port": 0})
    server.run_forever(threaded=True)
    return server


class RawEchoServer(IgorServer):
    """Igor's transport alone: every text message goes straight back, no JSON, no action, no worker thread.

    It overrides the private hook the transport calls for each text message
    (with the decoded ``str``); like the stock server's ``send_message`` it
    encodes the text back to UTF-8 and sends it. It is here only to measure
    the transport without the protocol layer.
    """

    def _message_received(self, client, text):
        client.send(text.encode("utf-8"))


def start_igor_raw() -> IgorServer:
    server = RawEchoServer({}, {"port": 0})
    server.run_forever(threaded=True)
    return server


def start_stock() -> WebsocketServer:
    server = WebsocketServer(host="127.0.0.1", port=0, loglevel=logging.ERROR)
    server.set_fn_message_received(lambda client, srv, message: srv.send_message(client, message))
    server.run_forever(threaded=True)
    return server


SERVERS = {"igor": start_igor, "igor-raw": start_igor_raw, "stock": start_stock}


def serve(kind: str) -> int:
    """Child process: run one server, print its port, stop when stdin closes."""
    server = SERVERS[kind]()
    print(server.port, flush=True)
    sys.stdin.read()
    return 0


class ServerProcess:
    """One server of ``SERVERS`` in a child process of its own."""

    def __init__(self, kind: str):
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- the lean raw-socket client ---------------------------------------------

_MASK = b"\x5a\xc3\x0f\x96"  # fixed: the masking key does not matter to either server


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One whole masked client frame; built before timing, so masking costs the measurement nothing."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = (_MASK * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + _MASK + masked


class RawClient:
    """A WebSocket client on a plain socket, doing as little as a client can per message."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode("ascii"))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed during the handshake")
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:80]!r}")
        # Bytes received but not yet parsed live in self.buf[self.start:self.end].
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.start, self.end = 0, len(rest)
        self.buf[: len(rest)] = rest

    def _fill(self, need: int) -> None:
        """Make at least ``need`` (<= 14) unparsed bytes available in self.buf."""
        if self.end - self.start >= need:
            return
        if self.start:
            self.buf[: self.end - self.start] = self.buf[self.start: self.end]
            self.start, self.end = 0, self.end - self.start
        while self.end - self.start < need:
            got = self.sock.recv_into(self.view[self.end:])
            if not got:
                raise ConnectionError("server closed the connection")
            self.end += got

    def read_frame(self, into: memoryview) -> Tuple[int, int]:
        """Read one unmasked server frame's payload into ``into``; returns (opcode, length)."""
        self._fill(2)
        first, second = self.buf[self.start], self.buf[self.start + 1]
        code = second & 0x7F
        if code < 126:
            length, header = code, 2
        elif code == 126:
            self._fill(4)
            (length,) = struct.unpack_from("!H", self.buf, self.start + 2)
            header = 4
        else:
            self._fill(10)
            (length,) = struct.unpack_from("!Q", self.buf, self.start + 2)
            header = 10
        self.start += header
        have = min(length, self.end - self.start)
        into[:have] = self.view[self.start: self.start + have]
        self.start += have
        while have < length:
            got = self.sock.recv_into(into[have:length])
            if not got:
                raise ConnectionError("server closed the connection")
            have += got
        return first & 0x0F, length

    def close(self) -> None:
        try:
            self.sock.sendall(masked_frame(struct.pack("!H", 1000), 0x8))
        except OSError:
            pass
        self.sock.close()


def raw_echo_big(client: RawClient, payload: bytes, reps: int) -> List[float]:
    """Round trips of one big text message echoed back; seconds per round trip."""
    frame = masked_frame(payload)
    reply = bytearray(len(payload))
    view = memoryview(reply)
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        client.sock.sendall(frame)
        opcode, length = client.read_frame(view)
        times.append(time.perf_counter() - began)
        assert opcode == 0x1 and length == len(payload) and reply == payload, "the echo differs from the request"
    return times


def raw_call_big(client: RawClient, text: str, reps: int, first_id: int) -> List[float]:
    """Round trips of a big Igor ``echo`` call: one frame out, data + close back; seconds each."""
    frames = [masked_frame(json.dumps({"streamId": first_id + k, "action": "echo", "data": text},
                                      ensure_ascii=False).encode("utf-8")) for k in range(reps)]
    reply = bytearray(len(frames[0]) + 4096)
    view = memoryview(reply)
    close = bytearray(256)
    times = []
    for k, frame in enumerate(frames):
        began = time.perf_counter()
        client.sock.sendall(frame)
        opcode, length = client.read_frame(view)
        close_opcode, close_length = client.read_frame(memoryview(close))
        times.append(time.perf_counter() - began)
        assert opcode == 0x1 and json.loads(reply[:length]) == {"streamId": first_id + k, "data": text}
        assert close_opcode == 0x1 and json.loads(close[:close_length]) == {"streamId": first_id + k, "close": True}
    return times


def small_texts(count: int, first_id: int) -> List[bytes]:
    return [json.dumps({"streamId": first_id + k, "action": "echo", "data": {"k": first_id + k}}).encode("utf-8")
            for k in range(count)]


def raw_calls(client: RawClient, count: int, first_id: int) -> float:
    """Igor calls per second, in sequence: one frame out, two frames (data, close) back."""
    frames = [masked_frame(text) for text in small_texts(count, first_id)]
    buf = bytearray(4096)
    view = memoryview(buf)
    replies = []
    began = time.perf_counter()
    for frame in frames:
        client.sock.sendall(frame)
        _, length = client.read_frame(view)
        replies.append(bytes(buf[:length]))
        _, length = client.read_frame(view)
        replies.append(bytes(buf[:length]))
    rate = count / (time.perf_counter() - began)
    for k in range(count):
        stream_id = first_id + k
        assert json.loads(replies[2 * k]) == {"streamId": stream_id, "data": {"k": stream_id}}
        assert json.loads(replies[2 * k + 1]) == {"streamId": stream_id, "close": True}
    return rate


def raw_echoes(client: RawClient, count: int, first_id: int) -> float:
    """Small text messages echoed per second, in sequence."""
    texts = small_texts(count, first_id)
    frames = [masked_frame(text) for text in texts]
    buf = bytearray(4096)
    view = memoryview(buf)
    replies = []
    began = time.perf_counter()
    for frame in frames:
        client.sock.sendall(frame)
        _, length = client.read_frame(view)
        replies.append(bytes(buf[:length]))
    rate = count / (time.perf_counter() - began)
    assert replies == texts, "an echo differs from its request"
    return rate


# -- websocket-client (the original rows) ------------------------------------

def connect(port: int) -> websocket.WebSocket:
    # UTF-8 validation is skipped on both: in pure Python it would cost the client seconds per 10 MB,
    # the same for both servers, and hide the difference between them.
    return websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=600, skip_utf8_validation=True)


def igor_round_trip(ws: websocket.WebSocket, text: str, stream_id: int) -> float:
    began = time.perf_counter()
    ws.send(json.dumps({"streamId": stream_id, "action": "echo", "data": text}, ensure_ascii=False))
    reply = json.loads(ws.recv())
    close = json.loads(ws.recv())
    elapsed = time.perf_counter() - began
    assert reply == {"streamId": stream_id, "data": text}, "Igor answered something else"
    assert close == {"streamId": stream_id, "close": True}
    return elapsed


def stock_round_trip(ws: websocket.WebSocket, text: str) -> float:
    began = time.perf_counter()
    ws.send(text)
    reply = ws.recv()
    elapsed = time.perf_counter() - began
    assert reply == text, "the server answered something else"
    return elapsed


def igor_calls(ws: websocket.WebSocket, count: int, first_id: int) -> float:
    began = time.perf_counter()
    for k in range(first_id, first_id + count):
        ws.send(json.dumps({"streamId": k, "action": "echo", "data": {"k": k}}))
        reply = ws.recv()
        close = ws.recv()
        assert json.loads(reply) == {"streamId": k, "data": {"k": k}} and json.loads(close)["close"] is True
    return count / (time.perf_counter() - began)


def stock_calls(ws: websocket.WebSocket, count: int, first_id: int) -> float:
    began = time.perf_counter()
    for k in range(first_id, first_id + count):
        text = json.dumps({"streamId": k, "action": "echo", "data": {"k": k}})
        ws.send(text)
        assert ws.recv() == text
    return count / (time.perf_counter() - began)


# -- the run ------------------------------------------------------------------

def median_rate(measure, batches: int, count: int) -> float:
    """Median calls/s over ``batches`` batches of ``count`` calls (stream ids never reused)."""
    return statistics.median(measure(count, 1_000_000 * (b + 1)) for b in range(batches))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run (under 10 s)")
    parser.add_argument("--size", type=int, default=BIG, help="bytes in the big message (default 10 MiB)")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    igor_reps, stock_reps = (1, 1) if args.quick else (5, 3)  # stock takes about 0.8 s per 10 MB round trip
    batches, count = (1, 300) if args.quick else (3, 2000)

    text = big_text(args.size)
    payload = text.encode("utf-8")
    ascii_text = big_ascii(args.size)
    ascii_payload = ascii_text.encode("ascii")
    igor, raw, stock = ServerProcess("igor"), ServerProcess("igor-raw"), ServerProcess("stock")
    results = {}
    try:
        # Raw-socket client.
        igor_c, raw_c, stock_c = RawClient(igor.port), RawClient(raw.port), RawClient(stock.port)
        try:
            raw_call_big(igor_c, "warm-up", 1, 1)
            raw_echo_big(raw_c, b"warm-up", 1)
            raw_echo_big(stock_c, b"warm-up", 1)
            results["raw big call"] = raw_call_big(igor_c, text, igor_reps, 10)
            results["raw big transport"] = raw_echo_big(raw_c, payload, igor_reps)
            results["raw big stock"] = raw_echo_big(stock_c, payload, stock_reps)
            results["ascii big call"] = raw_call_big(igor_c, ascii_text, igor_reps, 100)
            results["ascii big transport"] = raw_echo_big(raw_c, ascii_payload, igor_reps)
            results["ascii big stock"] = raw_echo_big(stock_c, ascii_payload, stock_reps)
            results["raw small call"] = median_rate(lambda n, i: raw_calls(igor_c, n, i), batches, count)
            results["raw small transport"] = median_rate(lambda n, i: raw_echoes(raw_c, n, i), batches, count)
            results["raw small stock"] = median_rate(lambda n, i: raw_echoes(stock_c, n, i), batches, count)
        finally:
            for client in (igor_c, raw_c, stock_c):
                client.close()

        # websocket-client, as in the original bench.
        igor_ws, raw_ws, stock_ws = connect(igor.port), connect(raw.port), connect(stock.port)
        try:
            igor_round_trip(igor_ws, "warm-up", 0)
            stock_round_trip(raw_ws, "warm-up")
            stock_round_trip(stock_ws, "warm-up")
            results["wsc big call"] = [igor_round_trip(igor_ws, text, k + 1) for k in range(igor_reps)]
            results["wsc big transport"] = [stock_round_trip(raw_ws, text) for _ in range(igor_reps)]
            results["wsc big stock"] = [stock_round_trip(stock_ws, text) for _ in range(stock_reps)]
            results["wsc small call"] = median_rate(lambda n, i: igor_calls(igor_ws, n, i), batches, count)
            results["wsc small transport"] = median_rate(lambda n, i: stock_calls(raw_ws, n, i), batches, count)
            results["wsc small stock"] = median_rate(lambda n, i: stock_calls(stock_ws, n, i), batches, count)
        finally:
            for ws in (igor_ws, raw_ws, stock_ws):
                ws.close()
    finally:
        for server in (igor, raw, stock):
            server.stop()

    mb = len(payload) / (1 << 20)
    rows = [("client", "benchmark", "Igor", "websocket-server 0.6.4", "Igor vs stock", "20x?")]
    for client, prefix in (("raw socket", "ascii"), ("raw socket", "raw"), ("websocket-client", "wsc")):
        stock_t = statistics.median(results[f"{prefix} big stock"])
        kind = "ASCII" if prefix == "ascii" else "mixed UTF-8"
        for what, key in (("Igor transport (raw echo)", "transport"), ("Igor call (JSON echo action)", "call")):
            igor_t = statistics.median(results[f"{prefix} big {key}"])
            ratio = stock_t / igor_t
            rows.append((client, f"{mb:.0f} MiB {kind} round trip, {what}, median ms", f"{igor_t * 1e3:.1f}",
                         f"{stock_t * 1e3:.1f}", f"{ratio:.1f}x faster", "yes" if ratio >= 20 else "no"))
        if prefix == "ascii":
            continue
        stock_rate = results[f"{prefix} small stock"]
        for what, key in (("Igor transport (raw echo)", "transport"), ("Igor call (data + close)", "call")):
            rate = results[f"{prefix} small {key}"]
            rows.append((client, f"small calls/s, {what}", f"{rate:,.0f}", f"{stock_rate:,.0f}",
                         f"{rate / stock_rate:.2f}x", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
          f"big round trips: Igor {igor_reps} each, stock {stock_reps}; small: median of {batches} x {count} calls")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
