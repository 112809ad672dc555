"""The client: one loop for every peer, on websocket-client, and a bulk frame reader for pushed messages."""

from __future__ import annotations

import json
import time
from typing import Any, List, Optional

import websocket


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
