"""The peers' servers, each run in a child process of its own (``--serve PEER``), and the parent's handle on one."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from .common import BLOB, ROOT, MiB, log


def serve(peer: str, igor_root: Optional[str] = None) -> int:
    """Run one peer's server; print its port; obey stdin ("broadcast N"); stop at end of stdin.

    ``igor_root``: the checkout Igor's server imports igor from (default ROOT).
    """
    start = {"websocket-server": serve_websocket_server, "websockets": serve_websockets,
             "socketio": serve_socketio, "igor": lambda: serve_igor(igor_root or ROOT)}[peer]
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
                command = raw_command(message) if isinstance(message, str) else None
                if command is None:
                    await ws.send(message)
                elif command[0] == "push":
                    for k in range(int(command[1])):
                        await ws.send(json.dumps({"k": k}))
                elif command[0] == "blob":
                    await ws.send(json.dumps(BLOB))
                elif command[0] == "bpush":  # N binary messages of 1 MiB, fresh bytes each
                    for _ in range(int(command[1])):
                        await ws.send(bytes(MiB))
                elif command[0] == "bsink":  # N binary messages in, their byte count back
                    size = 0
                    for _ in range(int(command[1])):
                        size += len(await ws.recv())
                    await ws.send(str(size))
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


def serve_igor(root: str):
    # First on the path, not whatever igor is installed (an editable install may point at another checkout),
    # and ahead of ROOT, which holds an igor of its own when root is another checkout.
    sys.path.insert(0, root)
    import igor
    from igor import IgorProcess, IgorServer, flatten

    # A checkout without igor/ would silently fall through to another one: refuse, and say which one was used.
    if not os.path.abspath(igor.__file__).startswith(os.path.join(os.path.abspath(root), "igor", "")):
        raise SystemExit(f"igor was imported from {igor.__file__}, not from {root}")
    print(f"IGOR {igor.__file__}", flush=True)

    def echo(out, data):
        return data

    def push(out, data):
        for k in range(data["count"]):
            out.send({"k": k})

    def blob(out, data):
        return BLOB

    def bpush(out, data):  # the download helper: a header, then 1 MiB chunks, fresh bytes each
        out.send_chunks((bytes(MiB) for _ in range(data)), size=data * MiB)

    def bsink(out, data):  # an upload read chunk by chunk
        return sum(len(chunk) for chunk in out)

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
    server = IgorServer(api=flatten({"echo": echo, "push": push, "blob": blob, "bpush": bpush, "bsink": bsink}),
                        config={"port": 0, "token": False, "max_clients": 1100})
    server.add_process("ticker", broadcaster)
    server.run_forever(threaded=True)
    return server.port, broadcaster.requests.put, server.shutdown


class ServerProcess:
    """One peer's server in a child process, with its stdin kept as the control channel."""

    def __init__(self, peer: str, log_dir: str, igor_root: Optional[str] = None):
        self.peer = peer
        self.log_path = os.path.join(log_dir, f"{peer}.log")
        self.igor_file: Optional[str] = None  # which igor the server imported (Igor only)
        command = [sys.executable, "-m", "bench.peers", "--serve", peer]
        if igor_root:
            command += ["--igor", igor_root]
        # The child imports this bench package by name, so ROOT goes first on its path whatever the cwd (a
        # checkout given as igor_root has a bench/ of its own); igor_root follows, so that anything the server
        # starts imports the same igor.
        path = [ROOT, igor_root, os.environ.get("PYTHONPATH")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True, env=env)
        line = ""
        began = time.monotonic()
        while not line.startswith("PORT ") and time.monotonic() - began < 30:
            line = self.process.stdout.readline()
            if line.startswith("IGOR "):
                self.igor_file = line[5:].strip()
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
