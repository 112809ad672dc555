"""The peers' servers, each run in a child process of its own (``--serve PEER``), and the parent's handle on one."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

from .common import BLOB, ROOT, MiB, chunk, log, video_frames


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


def raw_command(message: Any) -> Optional[List[str]]:
    """Raw peers take ``!push N`` and ``!blob`` as commands; every other message is echoed."""
    return message[1:].split() if isinstance(message, str) and message.startswith("!") else None


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
        upload: Optional[List[Any]] = None  # [bytes so far, the file or None] while an upload runs
        try:
            async for message in ws:
                command = raw_command(message)
                if upload is not None and isinstance(message, bytes):
                    upload[0] += len(message)
                    if upload[1] is not None:
                        upload[1].write(message)
                elif command is None:
                    await ws.send(message)  # text or binary, as it came
                elif command[0] == "push":
                    for k in range(int(command[1])):
                        await ws.send(json.dumps({"k": k}))
                elif command[0] == "blob":
                    await ws.send(json.dumps(BLOB))
                elif command[0] == "download":  # N chunks of 1 MiB as binary messages
                    for _ in range(int(command[1])):
                        await ws.send(chunk())
                elif command[0] == "upload":  # binary messages until "!end" are counted (and written)
                    upload = [0, tempfile.TemporaryFile() if command[1:] == ["file"] else None]  # noqa: SIM115 -- closed at "!end"
                elif command[0] == "end" and upload is not None:
                    if upload[1] is not None:
                        upload[1].close()
                    await ws.send(str(upload[0]))
                    upload = None
                elif command[0] == "frames":  # video frames, the next once the page says "ack"
                    frames = video_frames()
                    for k in range(int(command[1])):
                        await ws.send(frames[k % 2])
                        if await ws.recv() != "ack":
                            break
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

    # Video frames as binary attachments, the next once the page emits "ack" (events run on threads of
    # their own: async_handlers is on by default).
    replies: Dict[str, queue.Queue[str]] = {}

    @sio.on("frames")
    def frames(sid, count):
        waiting = replies.setdefault(sid, queue.Queue())
        pictures = video_frames()
        for k in range(count):
            sio.emit("frame", pictures[k % 2], to=sid)
            try:
                if waiting.get(timeout=20) != "ack":
                    break
            except queue.Empty:
                break
        return count

    @sio.on("ack")
    def ack(sid, *args):
        replies.setdefault(sid, queue.Queue()).put("ack")

    @sio.on("stop")
    def stop_frames(sid, *args):
        replies.setdefault(sid, queue.Queue()).put("stop")

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
    from igor import IgorProcess, IgorServer, InputEnded, flatten

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

    def download(out, data):  # protocol 3: a transfer header, then N chunks of 1 MiB as bare binary
        out.send_chunks(itertools.repeat(chunk(), data["count"]), size=data["count"] * MiB)

    def upload(out, data):  # protocol 3: bare binary input until the client ends it, counted
        received = 0
        while True:
            try:
                received += len(out.receive())
            except InputEnded:
                return received

    def upload_file(out, data):  # the same, written to a temporary file (deleted once closed)
        with tempfile.TemporaryFile() as file:
            return out.receive_file(file)

    class FramePusher(IgorProcess):
        """On ``{"frames": N}`` from a client, pushes it up to N video frames, the next once it sends "ack"."""

        def run(self) -> None:
            while not self.stopping:
                request = self.receive(timeout=0.2)
                if request is None or not isinstance(request.data, dict):
                    continue
                frames = video_frames()
                for k in range(int(request.data.get("frames", 0))):
                    self.output.send("frame", frames[k % 2], client_id=request.client_id)
                    reply = self.receive(timeout=20)
                    if reply is None or reply.data != "ack":
                        break

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
    api = {"echo": echo, "push": push, "blob": blob, "download": download, "upload": upload,
           "upload_file": upload_file}
    server = IgorServer(api=flatten(api), config={"port": 0, "token": False, "max_clients": 1100})
    server.add_process("ticker", broadcaster)
    server.add_process("frames", FramePusher())
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
