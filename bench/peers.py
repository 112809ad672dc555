"""Igor side by side with the servers a user would otherwise pick, all in one run.

Peers, each set up the way its users run it, each in a subprocess of its own on
a free loopback port (the child prints ``PORT n`` on stdout and takes commands
on stdin; end of stdin stops it):

- ``websocket-server``: stock ``WebsocketServer`` (0.6.4, what Igor builds on),
  ``message_received`` -> ``send_message`` echo;
- ``websockets``: the asyncio server, ``async for message in ws: await ws.send(message)``;
- ``socketio``: python-socketio ``Server(async_mode='threading')`` served by
  Werkzeug's threaded server (as Flask-SocketIO runs it; WebSocket transport by
  simple-websocket), events answered with acknowledgements (``call()``);
- ``igor``: ``IgorServer(api=flatten({...}), config={...})`` with an ``echo``
  action, a streaming action and an ``IgorProcess`` that broadcasts.

Every latency figure is taken with one client loop for every peer,
websocket-client with its pure-Python UTF-8 check off; Socket.IO's Engine.IO v4
/ Socket.IO v5 framing is spoken by hand over it. Pushed and broadcast messages
are read by a bulk frame reader on the same sockets (see README.md).

Run from the repository root: ``python bench/peers.py`` (3 runs, under 5 minutes
on 2 cores) or ``python bench/peers.py --quick`` (a smoke run, under a minute).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import queue
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional, Tuple

import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ["websocket-server", "websockets", "socketio", "igor"]
LABELS = {"websocket-server": "websocket-server", "websockets": "websockets",
          "socketio": "python-socketio", "igor": "Igor"}
MiB = 1 << 20


def make_blob(size: int) -> List[Dict[str, Any]]:
    """A list of small records whose JSON is about ``size`` bytes: what a UI pulls in bulk."""
    records: List[Dict[str, Any]] = []
    total = 2  # the brackets
    while True:
        record = {"id": len(records), "name": f"item-{len(records):06d}", "value": len(records) * 0.25,
                  "tags": ["a", "b"]}
        total += len(json.dumps(record)) + 2  # and its ", "
        if total > size:
            return records
        records.append(record)


BLOB = make_blob(256 * 1024)


# -- the servers (run in the child: --serve PEER) ---------------------------------------------------

def serve(peer: str) -> int:
    """Run one peer's server; print its port; obey stdin ("broadcast N"); stop at end of stdin."""
    start = {"websocket-server": serve_websocket_server, "websockets": serve_websockets,
             "socketio": serve_socketio, "igor": serve_igor}[peer]
    port, broadcast, stop = start()
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "broadcast":
            broadcast(int(argument))
    stop()
    return 0


def raw_command(message: str) -> Optional[List[str]]:
    """Raw peers take ``!push N`` and ``!blob`` as commands; every other message is echoed."""
    return message[1:].split() if message.startswith("!") else None


def serve_websocket_server():
    from websocket_server import WebsocketServer

    server = WebsocketServer(host="127.0.0.1", port=0)

    def message_received(client, _server, message):
        command = raw_command(message)
        if command is None:
            server.send_message(client, message)
        elif command[0] == "push":
            for k in range(int(command[1])):
                server.send_message(client, json.dumps({"k": k}))
        elif command[0] == "blob":
            server.send_message(client, json.dumps(BLOB))

    def broadcast(count: int) -> None:  # on the stdin thread: a background thread of its own
        for k in range(count):
            server.send_message_to_all(json.dumps({"k": k}))

    server.set_fn_message_received(message_received)
    server.run_forever(threaded=True)
    return server.port, broadcast, server.shutdown_abruptly


def serve_websockets():
    import asyncio

    from websockets.asyncio.server import broadcast as ws_broadcast
    from websockets.asyncio.server import serve as ws_serve

    connections = set()
    loop = asyncio.new_event_loop()
    ready: queue.Queue[Any] = queue.Queue()

    async def handler(ws):
        connections.add(ws)
        try:
            async for message in ws:
                command = raw_command(message)
                if command is None:
                    await ws.send(message)
                elif command[0] == "push":
                    for k in range(int(command[1])):
                        await ws.send(json.dumps({"k": k}))
                elif command[0] == "blob":
                    await ws.send(json.dumps(BLOB))
        finally:
            connections.discard(ws)

    async def broadcaster(count: int) -> None:
        for k in range(count):
            ws_broadcast(connections, json.dumps({"k": k}))
            if k % 64 == 63:
                await asyncio.sleep(0)  # let the loop write out what is buffered

    async def main(stopped: asyncio.Future[None]) -> None:
        # 64 MiB as Igor's default; the library's own default (1 MiB) would refuse the 10 MiB row.
        async with ws_serve(handler, "127.0.0.1", 0, max_size=64 * MiB) as server:
            ready.put(server.sockets[0].getsockname()[1])
            await stopped

    stopped = loop.create_future()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(stopped),), daemon=True)
    thread.start()

    def broadcast(count: int) -> None:
        asyncio.run_coroutine_threadsafe(broadcaster(count), loop).result()

    def stop() -> None:
        loop.call_soon_threadsafe(stopped.set_result, None)
        thread.join(5)

    return ready.get(timeout=20), broadcast, stop


def serve_socketio():
    import logging

    import socketio
    import werkzeug.serving

    # 64 MiB as Igor's default; Engine.IO's default (1 MB) would refuse the 10 MiB row.
    sio = socketio.Server(async_mode="threading", max_http_buffer_size=64 * MiB)

    @sio.on("echo")
    def echo(sid, data):
        return data

    @sio.on("push")
    def push(sid, count):
        for k in range(count):
            sio.emit("item", {"k": k}, to=sid)
        return count

    @sio.on("blob")
    def blob(sid, *args):
        return BLOB

    def broadcast(count: int) -> None:
        for k in range(count):
            sio.emit("tick", {"k": k})

    # Flask-SocketIO's socketio.run(app) in threading mode: Werkzeug's threaded server, request log off.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = werkzeug.serving.make_server("127.0.0.1", 0, socketio.WSGIApp(sio), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_port, broadcast, server.shutdown


def serve_igor():
    sys.path.insert(0, ROOT)  # the checkout this file lives in, not whatever igor is installed
    from igor import IgorProcess, IgorServer, flatten

    def echo(out, data):
        return data

    def push(out, data):
        for k in range(data["count"]):
            out.send({"k": k})

    def blob(out, data):
        return BLOB

    class Broadcaster(IgorProcess):
        """Sends ``tick`` to every client ``count`` times for each count put on ``requests``."""

        def __init__(self) -> None:
            super().__init__()
            self.requests: queue.Queue[int] = queue.Queue()

        def run(self) -> None:
            while not self.stopping:
                try:
                    count = self.requests.get(timeout=0.2)
                except queue.Empty:
                    continue
                for k in range(count):
                    self.output.send("tick", {"k": k})

    broadcaster = Broadcaster()
    # max_clients: the default (64) would refuse most of the 1,000 connections with 503.
    server = IgorServer(api=flatten({"echo": echo, "push": push, "blob": blob}),
                        config={"port": 0, "token": False, "max_clients": 1100})
    server.add_process("ticker", broadcaster)
    server.run_forever(threaded=True)
    return server.port, broadcaster.requests.put, server.shutdown


class ServerProcess:
    """One peer's server in a child process, with its stdin kept as the control channel."""

    def __init__(self, peer: str, log_dir: str):
        self.peer = peer
        self.log_path = os.path.join(log_dir, f"{peer}.log")
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", peer],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True)
        line = ""
        began = time.monotonic()
        while not line.startswith("PORT ") and time.monotonic() - began < 30:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"{peer} server exited with {self.process.returncode}; see {self.log_path}")
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"{peer} server printed no port within 30 s; see {self.log_path}")
        self.port = int(line.split()[1])
        self.pid = self.process.pid

    def command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def status(self) -> Dict[str, int]:
        """VmRSS (KiB) and Threads of the server process, from /proc/<pid>/status."""
        fields = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "Threads"):
                    fields[key] = int(value.split()[0])
        return fields

    def stop(self) -> None:
        began = time.monotonic()
        try:
            self.process.stdin.close()
            self.process.wait(3)  # a graceful stop is not measured; a server still busy closing is killed
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        log(f"  {self.peer:<16} stopped in {time.monotonic() - began:.1f} s")


# -- the client: one loop for every peer, on websocket-client ---------------------------------------

class Client:
    """One connection to a raw echo peer; subclasses speak Igor's and Socket.IO's protocols.

    ``call(action, data)`` sends one request and returns its answer: for raw peers
    the echo of ``json.dumps(data)`` (or a command's reply), decoded.
    """

    path = "/"
    subprotocols: Optional[List[str]] = None

    def __init__(self, port: int, timeout: float = 30):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{self.path}", timeout=timeout,
                                              skip_utf8_validation=True, subprotocols=self.subprotocols)
        self.next_id = 0
        self.opened()

    def opened(self) -> None:
        pass

    def request(self, action: str, data: Any, rid: int) -> str:
        if action == "echo":
            return json.dumps(data)
        if action == "push":
            return f"!push {data['count']}"
        return f"!{action}"

    def echo_text(self, text: str, rid: int) -> str:
        """The request that echoes a big string (a raw peer gets the string itself)."""
        return text

    def unwrap_echo(self, reply: str) -> str:
        return reply

    def receive(self, rid: int, decode: bool) -> Any:
        reply = self.ws.recv()
        return json.loads(reply) if decode else reply

    def call(self, action: str, data: Any = None, decode: bool = True) -> Any:
        self.next_id += 1
        self.ws.send(self.request(action, data, self.next_id))
        return self.receive(self.next_id, decode)

    def round_trip(self, text: str) -> float:
        """Seconds to echo ``text`` (request built before, reply checked after the clock)."""
        self.next_id += 1
        request = self.echo_text(text, self.next_id)
        began = time.perf_counter()
        self.ws.send(request)
        reply = self.receive(self.next_id, decode=False)
        elapsed = time.perf_counter() - began
        if self.unwrap_echo(reply) != text:
            raise AssertionError(f"{type(self).__name__}: the echo differs from the request")
        return elapsed

    def pushed(self, payload: bytes) -> bool:
        """Whether a text frame read in bulk is one of the pushed messages (not a close or an ack)."""
        return True

    def pushed_value(self, payload: bytes) -> Any:
        return json.loads(payload)

    def close(self) -> None:
        try:
            self.ws.close(timeout=2)
        except (OSError, websocket.WebSocketException):
            pass

    def drop(self) -> None:
        """Send the close frame but do not wait for the answer: a thousand closes at once stay quick."""
        try:
            self.ws.send_close()
        except (OSError, websocket.WebSocketException):
            pass
        self.ws.shutdown()


class IgorClient(Client):
    """Igor's protocol: ``{"streamId", "action", "data"}`` answered by data messages and a close.

    Version 2 (``igor.v2``), as Igor's own clients speak it: a returned value
    and the close come as one message.
    """

    subprotocols = ["igor.v2"]

    def request(self, action: str, data: Any, rid: int) -> str:
        return json.dumps({"streamId": rid, "action": action, "data": data})

    def echo_text(self, text: str, rid: int) -> str:
        return json.dumps({"streamId": rid, "action": "echo", "data": text})

    def unwrap_echo(self, reply: str) -> str:
        return json.loads(reply)["data"]

    def receive(self, rid: int, decode: bool) -> Any:
        value = None
        while True:
            frame = self.ws.recv()
            if not decode and len(frame) > 256:
                # A big data message, not parsed here (closes and errors are
                # short); the close may ride on it (the blob is a list, so no
                # data of ours ends this way).
                value = frame
                if frame.endswith(',"close":true}'):
                    return value
                continue
            message = json.loads(frame)
            if message.get("streamId") != rid:
                continue
            if "error" in message:
                raise RuntimeError(f"Igor answered an error: {message}")
            if "data" in message:
                value = message["data"] if decode else frame
            if message.get("close"):
                return value

    def pushed(self, payload: bytes) -> bool:
        return b'"close"' not in payload

    def pushed_value(self, payload: bytes) -> Any:
        return json.loads(payload)["data"]


class SocketIOClient(Client):
    """Engine.IO v4 / Socket.IO v5 by hand: ``42N["echo",data]`` answered by ``43N[value]``."""

    path = "/socket.io/?EIO=4&transport=websocket"

    def opened(self) -> None:
        opening = self.ws.recv()
        if not opening.startswith("0{"):
            raise ConnectionError(f"no Engine.IO open packet: {opening[:80]!r}")
        self.ws.send("40")  # connect to the default namespace
        while True:
            packet = self.ws.recv()
            if packet.startswith("40"):
                return
            if packet.startswith("44"):
                raise ConnectionError(f"namespace connect refused: {packet[:80]!r}")

    def request(self, action: str, data: Any, rid: int) -> str:
        if action == "push":
            data = data["count"]
        return f"42{rid}" + json.dumps([action] if data is None else [action, data])

    def echo_text(self, text: str, rid: int) -> str:
        return f"42{rid}" + json.dumps(["echo", text])

    def unwrap_echo(self, reply: str) -> str:
        return json.loads(reply)[0]

    def receive(self, rid: int, decode: bool) -> Any:
        prefix = f"43{rid}["
        while True:
            packet = self.ws.recv()
            if packet == "2":
                self.ws.send("3")  # Engine.IO ping from the server: pong
            elif packet.startswith(prefix):
                body = packet[len(prefix) - 1:]
                return json.loads(body)[0] if decode else body

    def pushed(self, payload: bytes) -> bool:
        return payload.startswith(b"42")

    def pushed_value(self, payload: bytes) -> Any:
        return json.loads(payload[2:])[1]


CLIENTS = {"websocket-server": Client, "websockets": Client, "socketio": SocketIOClient, "igor": IgorClient}


def connect(peer: str, port: int, timeout: float = 30) -> Client:
    return CLIENTS[peer](port, timeout)


class FrameReader:
    """Reads the server's frames off a connected client's socket in bulk (one recv per 256 KiB).

    websocket-client reads exactly the bytes of each frame it parses, so once its
    last reply is read nothing of the stream is left in its buffers.
    """

    def __init__(self, client: Client):
        self.client = client
        self.sock = client.ws.sock
        self.buf = bytearray()
        self.items: List[bytes] = []  # payloads for which client.pushed() is true
        self.done_at = 0.0

    def feed(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf = self.buf
        buf += chunk
        pos, end = 0, len(buf)
        while end - pos >= 2:
            code = buf[pos + 1] & 0x7F
            if code < 126:
                header, length = 2, code
            elif code == 126:
                header, length = 4, int.from_bytes(buf[pos + 2:pos + 4], "big")
            else:
                header, length = 10, int.from_bytes(buf[pos + 2:pos + 10], "big")
            if end - pos < header + length:
                break
            if buf[pos] == 0x81:  # a whole text frame (FIN + text); pings, closes and acks are skipped
                payload = bytes(buf[pos + header:pos + header + length])
                if self.client.pushed(payload):
                    self.items.append(payload)
            elif buf[pos] & 0x0F == 0x1:
                raise AssertionError("a fragmented text message: not expected for small pushes")
            pos += header + length
        del buf[:pos]


# -- workloads run in the harness process --------------------------------------------------------------

def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def serial_calls(peer: str, port: int, count: int, limit: float,
                 until: Optional[float] = None, warm_up: int = 20) -> Dict[str, float]:
    """Small echo calls one after another on one connection: rate and latency percentiles."""
    client = connect(peer, port)
    try:
        for k in range(warm_up):
            client.call("echo", {"k": k})
        times = []
        stop_at = until if until is not None else time.monotonic() + limit
        began = time.perf_counter()
        for k in range(count):
            if time.monotonic() >= stop_at:
                break
            data = {"k": k}
            t0 = time.perf_counter()
            value = client.call("echo", data)
            times.append(time.perf_counter() - t0)
            if value != data:
                raise AssertionError(f"{peer}: echo answered {value!r} to {data!r}")
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    if not times:
        raise AssertionError(f"{peer}: no call completed in the time given")
    return {"calls_per_s": len(times) / elapsed, "p50_ms": percentile(times, 0.5) * 1e3,
            "p99_ms": percentile(times, 0.99) * 1e3, "calls": len(times)}


def big_round_trips(peer: str, port: int, size: int, reps: int, limit: float) -> Dict[str, float]:
    """Median seconds to echo an ASCII string of ``size`` bytes; at least one, at most ``reps``, within ``limit``."""
    text = ("0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]
    client = connect(peer, port, timeout=120)
    try:
        client.round_trip("warm-up")
        times: List[float] = []
        began = time.monotonic()
        while len(times) < reps and (not times or time.monotonic() - began < limit):
            times.append(client.round_trip(text))
    finally:
        client.close()
    return {"median_ms": statistics.median(times) * 1e3, "reps": len(times)}


def push(peer: str, port: int, count: int, limit: float) -> Dict[str, float]:
    """``count`` small messages pushed to one client after one request: messages/s, all checked in order."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        reader = FrameReader(client)
        client.next_id += 1
        request = client.request("push", {"count": count}, client.next_id)
        began = time.perf_counter()
        client.ws.send(request)
        deadline = time.monotonic() + limit
        while len(reader.items) < count and time.monotonic() < deadline:
            reader.feed()
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    values = [client.pushed_value(p) for p in reader.items]
    if values != [{"k": k} for k in range(count)]:
        raise AssertionError(f"{peer}: {len(values)} of {count} pushed messages arrived, or out of order")
    return {"msgs_per_s": count / elapsed, "count": count}


def broadcast(server: ServerProcess, clients: int, count: int, limit: float) -> Dict[str, Any]:
    """The server's background thread/process sends ``count`` messages to all ``clients``: deliveries/s."""
    conns = [connect(server.peer, server.port) for _ in range(clients)]
    try:
        for c in conns:  # one call each: every connection is registered with the server before it starts
            c.call("echo", {"k": 0})
        readers = [FrameReader(c) for c in conns]
        selector = selectors.DefaultSelector()
        for r in readers:
            selector.register(r.sock, selectors.EVENT_READ, r)
        pending = len(readers)
        began = time.perf_counter()
        server.command(f"broadcast {count}")
        deadline = time.monotonic() + limit
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                r = key.data
                r.feed()
                if len(r.items) >= count:
                    r.done_at = time.perf_counter()
                    selector.unregister(r.sock)
                    pending -= 1
        selector.close()
    finally:
        for c in conns:
            c.close()
    received = sum(len(r.items) for r in readers)
    if pending:
        raise AssertionError(f"{server.peer}: {received} of {clients * count} deliveries within {limit} s")
    expected = [{"k": k} for k in range(count)]
    in_order = all([r.client.pushed_value(p) for p in r.items] == expected for r in readers)
    if not in_order:
        raise AssertionError(f"{server.peer}: a client received the broadcast out of order or altered")
    elapsed = max(r.done_at for r in readers) - began
    return {"deliveries_per_s": received / elapsed, "clients": clients, "count": count, "in_order": True}


# -- workloads run in the worker processes ---------------------------------------------------------

_PROGRESS: Any = None  # a multiprocessing queue: workers of the connections workload report here
_RELEASE: Any = None  # a multiprocessing event: set when the connections may close


def _init_worker(progress, release) -> None:
    global _PROGRESS, _RELEASE
    _PROGRESS, _RELEASE = progress, release


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def parallel_worker(peer: str, port: int, start_at: float, stop_at: float, max_calls: int) -> Tuple[int, float]:
    """Small calls in a loop from ``start_at`` until ``stop_at`` (or ``max_calls``); (calls, end time)."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        _sleep_until(start_at)
        done = 0
        while done < max_calls and time.monotonic() < stop_at:
            data = {"k": done}
            if client.call("echo", data) != data:
                raise AssertionError(f"{peer}: wrong echo")
            done += 1
        return done, time.monotonic()
    finally:
        client.close()


def loader_worker(peer: str, port: int, start_at: float, stop_at: float) -> Tuple[int, int]:
    """Pulls the ~256 KiB blob again and again until ``stop_at``; (pulls, bytes)."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        _sleep_until(start_at)
        pulls = size = 0
        while time.monotonic() < stop_at:
            reply = client.call("blob", None, decode=False)  # checked by size; parsing would only load the client
            if len(reply) < 200_000:
                raise AssertionError(f"{peer}: the blob came back short ({len(reply)} characters)")
            pulls, size = pulls + 1, size + len(reply)
        return pulls, size
    finally:
        client.close()


def connections_worker(peer: str, port: int, worker: int, count: int, start_at: float,
                       timeout: float) -> Dict[str, int]:
    """``count`` threads each open a connection at ``start_at`` and make one call, then hold it open.

    Reports on _PROGRESS once every thread has succeeded or failed, and closes
    all connections once _RELEASE is set.
    """
    threading.stack_size(256 * 1024)
    outcomes: Counter = Counter()
    lock = threading.Lock()
    all_tried = threading.Event()

    def one(k: int) -> None:
        client = None
        try:
            client = connect(peer, port, timeout)
            data = {"k": k}
            outcome = "ok" if client.call("echo", data) == data else "wrong reply"
        except Exception as exc:  # noqa: BLE001 -- each failure is counted by kind
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1
            if sum(outcomes.values()) == count:
                all_tried.set()
        _RELEASE.wait(timeout + 30)
        if client is not None:
            client.drop()

    _sleep_until(start_at)
    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    all_tried.wait(timeout + 10)
    with lock:
        _PROGRESS.put((worker, dict(outcomes)))
    for t in threads:
        t.join(timeout + 40)
    return dict(outcomes)


def settled(server: ServerProcess, quiet: float = 2.5, limit: float = 8.0) -> Dict[str, int]:
    """The server's status once its thread count has held still for ``quiet`` seconds (at most ``limit``).

    Threads that end after a handshake, or a pool's idle workers (Igor's end
    2 s after their last call), are not the connections' own.
    """
    began = time.monotonic()
    status = server.status()
    still_since = began
    while time.monotonic() - began < limit:
        time.sleep(0.1)
        now = server.status()
        if now["Threads"] != status["Threads"]:
            still_since = time.monotonic()
        status = now
        if time.monotonic() - still_since >= quiet:
            break
    return status


def listen_counters() -> Dict[str, int]:
    """The kernel's TcpExt ListenOverflows and ListenDrops (this network namespace, all sockets)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {"overflows": counters["ListenOverflows"], "drops": counters["ListenDrops"]}
    raise RuntimeError("no TcpExt line in /proc/net/netstat")


class Workers:
    """A pool of client processes (spawned once, reused by every run) and its coordination channels."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("spawn")
        self.progress = context.Queue()
        self.release = context.Event()
        self.pool = context.Pool(processes, initializer=_init_worker, initargs=(self.progress, self.release))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def parallel(workers: Workers, peer: str, port: int, clients: int, seconds: float,
             max_calls: int) -> Dict[str, float]:
    start_at = time.monotonic() + 0.7  # time for every worker to connect first
    jobs = [workers.pool.apply_async(parallel_worker, (peer, port, start_at, start_at + seconds, max_calls))
            for _ in range(clients)]
    results = [job.get(seconds + 60) for job in jobs]
    calls = sum(n for n, _ in results)
    return {"calls_per_s": calls / (max(end for _, end in results) - start_at), "calls": calls}


def under_load(workers: Workers, peer: str, port: int, loaders: int, seconds: float,
               count: int) -> Dict[str, float]:
    """Serial small calls from this process while ``loaders`` worker processes pull the blob."""
    start_at = time.monotonic() + 0.7
    stop_at = start_at + seconds
    jobs = [workers.pool.apply_async(loader_worker, (peer, port, start_at, stop_at)) for _ in range(loaders)]
    _sleep_until(start_at + 0.3)  # the loaders are under way
    measured = serial_calls(peer, port, count, 0, until=stop_at, warm_up=1)
    results = [job.get(seconds + 120) for job in jobs]
    return {"p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"], "calls": measured["calls"],
            "loader_mib_per_s": sum(size for _, size in results) / MiB / seconds}


def connections(workers: Workers, server: ServerProcess, total: int, processes: int,
                timeout: float) -> Dict[str, Any]:
    """``total`` connections at once, each making one call and then held open while the server is sampled."""
    idle = server.status()
    before = listen_counters()
    workers.release.clear()
    start_at = time.monotonic() + 1.0
    share = [total // processes + (1 if w < total % processes else 0) for w in range(processes)]
    jobs = [workers.pool.apply_async(connections_worker, (server.peer, server.port, w, n, start_at, timeout))
            for w, n in enumerate(share)]
    for _ in range(processes):
        workers.progress.get(timeout=timeout + 60)
    served_in = time.monotonic() - start_at
    held = settled(server)

    after = listen_counters()
    workers.release.set()
    outcomes: Counter = Counter()
    for job in jobs:
        outcomes.update(job.get(timeout + 60))
    workers.release.clear()
    ok = outcomes.pop("ok", 0)
    return {
        "ok": ok, "failed": sum(outcomes.values()), "errors": dict(outcomes), "total": total,
        "listen_overflows": after["overflows"] - before["overflows"], "listen_drops": after["drops"] - before["drops"],
        "rss_idle_mib": idle["VmRSS"] / 1024, "rss_open_mib": held["VmRSS"] / 1024,
        "threads_idle": idle["Threads"], "threads_open": held["Threads"],
        "threads_per_conn": (held["Threads"] - idle["Threads"]) / max(ok, 1), "seconds": served_in,
    }


# -- the run -------------------------------------------------------------------------------------------

FULL = {"serial": 2000, "serial_s": 4.0, "parallel_clients": 8, "parallel_s": 1.5, "parallel_max": 20000,
        "sizes": [1 * MiB, 10 * MiB], "reps": [5, 3], "big_s": 4.0,
        "push": 20000, "push_s": 20.0, "connections": 1000, "conn_processes": 4, "conn_timeout": 12.0,
        "bcast_clients": 100, "bcast": 1000, "bcast_s": 20.0, "loaders": 8, "load_s": 3.0, "load_calls": 2000}
QUICK = dict(FULL, serial=200, serial_s=1.0, parallel_s=0.5, reps=[1, 1],
             big_s=1.0, push=2000, connections=100, conn_timeout=10.0, bcast_clients=20, bcast=200, load_s=1.5)
WORKLOADS = ["serial", "parallel", "big", "push", "connections", "broadcast", "load"]


def run_once(peers: List[str], p: Dict[str, Any], workers: Workers, log_dir: str, only: List[str],
             turn: int) -> Dict[str, Dict[str, Any]]:
    """One run: each workload against every peer in turn, so the host's noise falls on all of them alike.

    The peers take turns workload by workload, not run by run, and the order rotates with ``turn``, so
    no peer always goes first. The connections workload gets a fresh server per peer; every other
    workload runs on one server per peer, all started together and idle while another peer is measured.
    """
    order = peers[turn % len(peers):] + peers[:turn % len(peers)]
    results: Dict[str, Dict[str, Any]] = {peer: {} for peer in peers}

    def attempt(peer: str, name: str, function: Callable[..., Any], *args: Any) -> None:
        began = time.monotonic()
        try:
            results[peer][name] = function(*args)
        except Exception as exc:  # noqa: BLE001 -- a peer that fails a workload is reported, the run goes on
            results[peer][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        log(f"  {peer:<16} {name:<12} {time.monotonic() - began:5.1f} s  {short(results[peer][name])}")

    if "connections" in only:
        for peer in order:
            fresh = ServerProcess(peer, log_dir)
            try:
                attempt(peer, "connections", connections, workers, fresh, p["connections"], p["conn_processes"],
                        p["conn_timeout"])
            finally:
                fresh.stop()
    servers: Dict[str, ServerProcess] = {}
    try:
        for peer in order:
            servers[peer] = ServerProcess(peer, log_dir)
        workloads: Dict[str, Callable[[str, ServerProcess], Any]] = {
            "serial": lambda peer, s: serial_calls(peer, s.port, p["serial"], p["serial_s"]),
            "parallel": lambda peer, s: parallel(workers, peer, s.port, p["parallel_clients"], p["parallel_s"],
                                                 p["parallel_max"]),
            "big": lambda peer, s: {str(size): big_round_trips(peer, s.port, size, reps, p["big_s"])
                                    for size, reps in zip(p["sizes"], p["reps"])},
            "push": lambda peer, s: push(peer, s.port, p["push"], p["push_s"]),
            "broadcast": lambda peer, s: broadcast(s, p["bcast_clients"], p["bcast"], p["bcast_s"]),
            "load": lambda peer, s: under_load(workers, peer, s.port, p["loaders"], p["load_s"], p["load_calls"]),
        }
        for name, function in workloads.items():
            if name in only:
                for peer in order:
                    attempt(peer, name, function, peer, servers[peer])
    finally:
        for server in servers.values():
            server.stop()
    return results


def short(value: Any) -> str:
    if isinstance(value, dict) and "error" in value:
        return "FAILED " + value["error"]
    text = json.dumps(value, default=str)
    return text if len(text) < 140 else text[:137] + "..."


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("websocket-server", "websockets", "python-socketio", "python-engineio", "simple-websocket",
                 "wsproto", "werkzeug", "websocket-client", "numpy", "orjson", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "", ""
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "versions": versions,
            "igor_commit": commit + (" (with uncommitted changes)" if dirty else "")}


# -- the report ---------------------------------------------------------------------------------------

def metric(run: Dict[str, Any], peer: str, path: str) -> Optional[float]:
    """A number from one run's results, ``None`` where the workload failed or did not run."""
    value: Any = run.get(peer, {})
    for part in path.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows(p: Dict[str, Any]) -> List[Tuple[str, str, str, Optional[str]]]:
    """(label, metric path, number format, which way is better) for the results table."""
    one, ten = str(p["sizes"][0]), str(p["sizes"][-1])
    n = p["connections"]
    return [
        ("1 serial small calls, calls/s", "serial/calls_per_s", "{:,.0f}", "high"),
        ("1 serial small calls, p50 ms", "serial/p50_ms", "{:.3f}", "low"),
        ("1 serial small calls, p99 ms", "serial/p99_ms", "{:.3f}", "low"),
        (f"2 {p['parallel_clients']} parallel clients, total calls/s", "parallel/calls_per_s", "{:,.0f}", "high"),
        (f"3 {int(one) // MiB} MiB round trip, median ms", f"big/{one}/median_ms", "{:.1f}", "low"),
        (f"3 {int(ten) // MiB} MiB round trip, median ms", f"big/{ten}/median_ms", "{:.0f}", "low"),
        (f"4 {p['push']:,} pushed messages, msgs/s", "push/msgs_per_s", "{:,.0f}", "high"),
        (f"5 {n:,} connections: served", "connections/ok", "{:,.0f}", "high"),
        (f"5 {n:,} connections: listen-queue overflows", "connections/listen_overflows", "{:,.0f}", "low"),
        (f"5 {n:,} connections: seconds until all served", "connections/seconds", "{:.1f}", "low"),
        ("5 server RSS MiB, idle", "connections/rss_idle_mib", "{:.1f}", None),
        (f"5 server RSS MiB, {n:,} open", "connections/rss_open_mib", "{:.1f}", "low"),
        (f"5 server threads, idle / {n:,} open", "connections/threads_open", "{:,.0f}", "low"),
        (f"6 broadcast to {p['bcast_clients']} clients, deliveries/s", "broadcast/deliveries_per_s", "{:,.0f}",
         "high"),
        ("7 small call under load, p50 ms", "load/p50_ms", "{:.2f}", "low"),
        ("7 small call under load, p99 ms", "load/p99_ms", "{:.2f}", "low"),
        (f"7 the {p['loaders']} loaders pulled, MiB/s", "load/loader_mib_per_s", "{:,.0f}", "high"),
    ]


def targets(p: Dict[str, Any]) -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], str, float, str]]:
    """The issue's targets: (what, per-run value, comparison, threshold, format)."""
    n = p["connections"]

    def ratio(path: str, peer: str, invert: bool = False) -> Callable[[Dict[str, Any]], Optional[float]]:
        def value(run: Dict[str, Any]) -> Optional[float]:
            a, b = metric(run, "igor", path), metric(run, peer, path)
            if a is None or b is None or (b if not invert else a) == 0:
                return None
            return b / a if invert else a / b
        return value

    def own(path: str) -> Callable[[Dict[str, Any]], Optional[float]]:
        return lambda run: metric(run, "igor", path)

    ten = str(p["sizes"][-1])
    return [
        ("serial calls/s vs websocket-server echo", ratio("serial/calls_per_s", "websocket-server"), ">=", 0.35, "x"),
        ("serial calls/s vs python-socketio", ratio("serial/calls_per_s", "socketio"), ">=", 10, "x"),
        ("serial p99 / own p50", lambda run: (metric(run, "igor", "serial/p99_ms") or 0)
         / (metric(run, "igor", "serial/p50_ms") or float("nan")), "<", 3, "x"),
        ("8 parallel clients vs websocket-server echo", ratio("parallel/calls_per_s", "websocket-server"), ">=", 0.6,
         "x"),
        (f"{int(ten) // MiB} MiB round trip time / websockets' time", ratio(f"big/{ten}/median_ms", "websockets"),
         "<=", 1.2, "x"),
        ("pushed msgs/s vs websocket-server", ratio("push/msgs_per_s", "websocket-server"), ">=", 0.9, "x"),
        (f"{n:,} connections all served", own("connections/ok"), ">=", n, "n"),
        (f"{n:,} connections: listen-queue overflows", own("connections/listen_overflows"), "<=", 0, "n"),
        (f"{n:,} connections: server RSS MiB", own("connections/rss_open_mib"), "<", 64, "MiB"),
        (f"{n:,} connections: threads per idle connection", own("connections/threads_per_conn"), "<=", 1, "t"),
        ("broadcast deliveries/s", own("broadcast/deliveries_per_s"), ">=", 250_000, "n"),
        ("broadcast vs python-socketio", ratio("broadcast/deliveries_per_s", "socketio"), ">=", 6, "x"),
        ("p50 under streaming load / python-socketio's", ratio("load/p50_ms", "socketio"), "<=", 1, "x"),
    ]


def fmt_range(values: List[Optional[float]], form: str) -> str:
    got = [v for v in values if v is not None and v == v]
    if not got:
        return "failed" if values else "–"
    low, high = min(got), max(got)
    text = form.format(low) if form.format(low) == form.format(high) else f"{form.format(low)} – {form.format(high)}"
    missing = len(values) - len(got)
    return text + (f" ({missing} failed)" if missing else "")


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def cpu_ticks() -> Optional[Tuple[int, int]]:
    """(all CPU ticks, steal ticks) from /proc/stat: steal is time the hypervisor gave to other guests."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]), ticks[7]) if len(ticks) >= 8 else None


def report(data: Dict[str, Any]) -> str:
    """The Markdown the harness prints and writes: setup, results, ratios, targets."""
    runs, p, m, peers = data["runs"], data["params"], data["machine"], data["peers"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"{m['date']}; {m['cpu']}, {m['cores']} cores, {m['system']}; Python {m['python']}; {versions}; "
        f"Igor at {m['igor_commit'] or 'unknown commit'}. {len(runs)} run(s) in {data['seconds']:.0f} s; 1-minute "
        f"load average {data['load'][0]:.1f} before, {data['load'][1]:.1f} after (the machine may be shared); "
        + (f"CPU time taken by the host (steal) in each run: "
           f"{', '.join(f'{v:.1f}%' for v in data['steal_percent'])}; " if data.get("steal_percent") else "")
        + "each cell is the range (min – max) over the runs.",
        "",
        "Client for every latency figure: websocket-client (`create_connection(..., skip_utf8_validation=True)`), "
        "one loop for all peers (Socket.IO's Engine.IO v4 / Socket.IO v5 framing by hand on it; Igor's protocol "
        "version 2, `igor.v2`, as its own clients speak it). Pushed and "
        "broadcast messages are read in bulk from the same sockets. Parallel clients and stream loaders: "
        "separate worker processes, one connection each. Counts: "
        f"{p['serial']:,} serial calls (at most {p['serial_s']:g} s); {p['parallel_clients']} clients for "
        f"{p['parallel_s']:g} s; {', '.join(f'{n} x {s // MiB} MiB' for s, n in zip(p['sizes'], p['reps']))} "
        f"(at most {p['big_s']:g} s each after the first); {p['push']:,} pushes; {p['connections']:,} connections "
        f"from {p['conn_processes']} processes (each thread one connection, {p['conn_timeout']:g} s timeout); "
        f"{p['bcast_clients']} clients x {p['bcast']:,} broadcasts; {p['loaders']} loaders pulling a "
        f"{round(data['blob_bytes'] / 1024)} KiB JSON reply for {p['load_s']:g} s. Igor runs with "
        "`max_clients: 1100` (its default, 64, would refuse most of the connections).",
        "",
        "| workload | " + " | ".join(LABELS[peer] for peer in peers) + " | "
        + " | ".join(f"Igor vs {LABELS[peer]}" for peer in peers if peer != "igor") + " |",
        "| --- " * (2 * len(peers)) + "|",
    ]
    for label, path, form, better in rows(p):
        workload = path.split("/")[0]
        if not any(workload in r.get(peer, {}) for r in runs for peer in peers):
            continue  # not run (--workloads)
        cells = []
        for peer in peers:
            tried = [r for r in runs if workload in r.get(peer, {})]
            if path == "connections/threads_open":
                idle = fmt_range([metric(r, peer, "connections/threads_idle") for r in tried], form)
                cells.append(idle + " / " + fmt_range([metric(r, peer, path) for r in tried], form))
            else:
                cells.append(fmt_range([metric(r, peer, path) for r in tried], form))
        for peer in peers:
            if peer == "igor":
                continue
            ratios = []
            for r in runs:
                a, b = metric(r, "igor", path), metric(r, peer, path)
                if better and a is not None and b is not None and a > 0 and b > 0:
                    ratios.append(a / b if better == "high" else b / a)
            cells.append(fmt_range(ratios, "{:.2f}x") if ratios else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Igor vs a peer: above 1 means Igor is better (more per second, or less time, memory, threads).", "",
              "| target (issue 11) | wanted | measured, median of runs (range) | |", "| --- | --- | --- | --- |"]
    for what, value, op, threshold, unit in targets(p):
        values = [value(r) for r in runs]
        got = [v for v in values if v is not None and v == v]
        wanted = f"{op} {threshold:g}x" if unit == "x" else f"{op} {threshold:,g}"
        if not got:
            lines.append(f"| {what} | {wanted} | failed | not met |")
            continue
        median = statistics.median(got)
        met = {">=": median >= threshold, "<=": median <= threshold, "<": median < threshold}[op]
        if unit == "x":
            shown = f"{fmt_ratio(median)} ({fmt_range(got, '{:.2f}x')})"
        else:
            form = "{:,.1f}" if unit in ("MiB", "t") else "{:,.0f}"
            shown = f"{form.format(median)} ({fmt_range(got, form)})"
        lines.append(f"| {what} | {wanted} | {shown} | {'**met**' if met else 'not met'} |")
    return "\n".join(lines) + "\n"


def chart(data: Dict[str, Any], path: str) -> None:
    """One panel per headline figure, a bar per peer (the median of the runs, whiskers min – max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, runs, peers = data["params"], data["runs"], data["peers"]
    panels = [("serial calls/s", "serial/calls_per_s", "higher"),
              (f"{p['parallel_clients']} parallel clients, calls/s", "parallel/calls_per_s", "higher"),
              (f"{p['sizes'][-1] // MiB} MiB round trip, ms", f"big/{p['sizes'][-1]}/median_ms", "lower"),
              (f"{p['push']:,} pushes, msgs/s", "push/msgs_per_s", "higher"),
              (f"RSS MiB, {p['connections']:,} connections", "connections/rss_open_mib", "lower"),
              (f"threads, {p['connections']:,} connections", "connections/threads_open", "lower"),
              (f"broadcast to {p['bcast_clients']}, deliveries/s", "broadcast/deliveries_per_s", "higher"),
              ("call p50 under load, ms", "load/p50_ms", "lower")]
    colours = {"websocket-server": "#9e9e9e", "websockets": "#64b5f6", "socketio": "#ffb74d", "igor": "#2e7d32"}
    figure, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (title, key, better) in zip(axes.flat, panels):
        for x, peer in enumerate(peers):
            values = [v for v in (metric(r, peer, key) for r in runs) if v is not None]
            if not values:
                ax.text(x, 0, "failed", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            mid = statistics.median(values)
            ax.bar(x, mid, color=colours[peer], yerr=[[mid - min(values)], [max(values) - mid]], capsize=3)
            ax.text(x, max(values), f"{mid:,.0f}" if mid >= 100 else f"{mid:.2g}", ha="center", va="bottom",
                    fontsize=8)
        ax.set_title(f"{title}\n({better} is better)", fontsize=10)
        ax.set_xticks(range(len(peers)), [LABELS[peer] for peer in peers], rotation=20, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    m = data["machine"]
    figure.suptitle(f"Igor and its peers, {m['date']}, {m['cores']} cores, Python {m['python']}: "
                    f"median of {len(runs)} run(s), whiskers min – max", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


README_BEGIN = "<!-- results: begin (written by python bench/peers.py --update-readme) -->"
README_END = "<!-- results: end -->"


def update_readme(table: str) -> None:
    """Put ``table`` between the results markers of bench/README.md."""
    path = os.path.join(ROOT, "bench", "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, begin, rest = text.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise SystemExit(f"{path} has no {README_BEGIN} ... {README_END} section to update")
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + table + end + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many times to run everything (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one run, small counts, under a minute")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    parser.add_argument("--out", help="folder for peers.md, peers.json and peers.png "
                                      "(default bench/results, or a temporary folder with --quick)")
    parser.add_argument("--update-readme", action="store_true",
                        help="also copy the table into bench/README.md, between its results markers")
    parser.add_argument("--serve", choices=PEERS, help="run one peer's server only (prints PORT n; for profiling)")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    peers = [peer for peer in args.peers.split(",") if peer]
    only = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(peers) - set(PEERS)) + sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown peers or workloads: {', '.join(unknown)}")
    if args.update_readme and args.quick:
        parser.error("--update-readme takes a full run's table, not a --quick one")
    runs = 1 if args.quick else args.runs
    p = QUICK if args.quick else FULL
    out = args.out or (os.path.join(tempfile.gettempdir(), "igor-bench-quick") if args.quick
                       else os.path.join(ROOT, "bench", "results"))
    os.makedirs(out, exist_ok=True)
    log_dir = os.path.join(tempfile.gettempdir(), "igor-bench-logs")  # the servers' stderr
    os.makedirs(log_dir, exist_ok=True)
    for name in os.listdir(log_dir):
        os.remove(os.path.join(log_dir, name))

    data: Dict[str, Any] = {"machine": machine(), "params": p, "peers": peers, "blob_bytes": len(json.dumps(BLOB)),
                            "runs": []}
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    workers = Workers(max(p["parallel_clients"], p["loaders"], p["conn_processes"]))
    try:
        data["steal_percent"] = []
        for run in range(runs):
            log(f"run {run + 1} of {runs}")
            before = cpu_ticks()
            data["runs"].append(run_once(peers, p, workers, log_dir, only, run))
            after = cpu_ticks()
            if before and after and after[0] > before[0]:
                data["steal_percent"].append(100 * (after[1] - before[1]) / (after[0] - before[0]))
    finally:
        workers.close()
    data["seconds"] = time.monotonic() - began
    data["load"] = [load_before, os.getloadavg()[0]]
    table = report(data)
    with open(os.path.join(out, "peers.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "peers.json"), "w") as f:
        json.dump(data, f, indent=1)
    chart(data, os.path.join(out, "peers.png"))
    if args.update_readme:
        update_readme(table)
    print(table)
    print(f"({data['seconds']:.0f} s; wrote {out}/peers.md, peers.json, peers.png; server logs in {log_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
