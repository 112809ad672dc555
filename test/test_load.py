"""Load: many concurrent clients, slow consumers, many threads writing to one client."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
import websocket
import wsraw
from conftest import wait_for

from igor import IgorProcess, StreamCancelled

CLIENTS = 200
CALLS = 50
TOTAL_DEADLINE = 180.0
BIG = 5 * 1024 * 1024


def pattern(size: int) -> str:
    return ("0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]


# -- handlers -----------------------------------------------------------------------


def echo(out, data):
    return data


def count(out, data):
    for i in range(data["n"]):
        out.send({"i": i, "tag": data["tag"], "pad": "p" * (i % 50)})


def big(out, data):
    out.send(pattern(data))


def flood(out, data, scope):
    """Stream large messages to a client that may not read them."""
    record = scope["flood"]
    try:
        for i in range(data["n"]):
            out.send({"i": i, "pad": "f" * (data["size"] if i else data.get("first", data["size"]))})
            record["last_send"] = time.monotonic()
            record["sent"] = i + 1
    except StreamCancelled:
        record["cancelled"] = time.monotonic()
        raise
    finally:
        record["done"].set()


def kick(out, data, client):
    client.close(1008, "kicked")


API = {"echo": echo, "count": count, "big": big, "flood": flood, "kick": kick}


@pytest.fixture
def start(start_server):
    def start_with_flood(config, processes=None):
        server = start_server(API, config, processes)
        server.scope["flood"] = {"done": threading.Event(), "sent": 0}
        return server

    return start_with_flood


def call(ws, stream_id, data, on_push=None):
    """One echo call on a websocket-client connection; pushes seen meanwhile go to ``on_push``."""
    ws.send(json.dumps({"streamId": stream_id, "action": "echo", "data": data}))
    replies = []
    for _ in range(10_000):
        message = json.loads(ws.recv())
        if "action" in message:
            assert on_push is not None, message
            on_push(message)
            continue
        replies.append(message)
        if message.get("close"):
            break
    assert replies == [{"streamId": stream_id, "data": data}, {"streamId": stream_id, "data": None, "close": True}]


# -- 200 concurrent clients -----------------------------------------------------------


def test_200_concurrent_clients_50_calls_each(start):
    server = start({"max_clients": CLIENTS + 16})
    url = f"ws://127.0.0.1:{server.port}/"
    connected = threading.Barrier(CLIENTS + 1, timeout=60)
    done = [0] * CLIENTS
    errors = []

    def client(index: int) -> None:
        try:
            ws = websocket.create_connection(url, timeout=60)
        except BaseException as exc:
            errors.append((index, repr(exc)))
            connected.abort()
            return
        try:
            connected.wait()
            for k in range(CALLS):
                call(ws, k, {"client": index, "call": k, "text": "é" * (k % 5)})
                done[index] += 1
        except BaseException as exc:
            errors.append((index, repr(exc)))
        finally:
            ws.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    connected.wait()
    # Every client is connected before any call: the calls really run concurrently.
    wait_for(lambda: len(server.registry) == CLIENTS, 10, message="200 registered clients")
    deadline = started + TOTAL_DEADLINE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "clients still running at the deadline"
    assert errors == []
    assert done == [CALLS] * CLIENTS
    wait_for(lambda: len(server.registry) == 0, 10, message="every client to leave")


# -- slow consumers ---------------------------------------------------------------------


class Ticker(IgorProcess):
    """Broadcasts a numbered tick to every client at a steady pace, timing each send."""

    def __init__(self, interval: float, size: int):
        super().__init__()
        self.interval = interval
        self.size = size
        self.sends = []  # (when, how long output.send took, tick number)

    def run(self):
        for i in range(1_000_000):
            if self.wait(self.interval):
                return
            began = time.monotonic()
            self.output.send("tick", {"i": i, "pad": "t" * self.size})
            self.sends.append((began, time.monotonic() - began, i))


def slow_client(port: int, first: int = 8 * 1024 * 1024, n: int = 5000) -> socket.socket:
    """A raw connection with a small receive buffer that calls ``flood`` and never reads.

    The first message (8 MB) is larger than the kernel's socket buffers can take, so the server's
    writer is stuck inside it for good and the queue behind it fills: the slow client is slow every time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(wsraw.request(port))
    status, _ = wsraw.read_http_head(sock)
    assert status == 101
    wsraw.send_frame(sock, 0x1, json.dumps({"streamId": "flood", "action": "flood",
                                            "data": {"n": n, "size": 64 * 1024, "first": first}}).encode())
    return sock


def slow_scenario(start):
    """A broadcasting process, a good client, and a slow one; returns what was seen."""
    ticker = Ticker(0.02, 4096)
    # A long send_timeout: the broadcasting process, not the blocked handler, meets the full queue first.
    server = start({"send_queue_size": 8, "send_timeout": 1.0}, {"ticker": ticker})
    good = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=10)
    ticks = []
    try:
        for k in range(-100_000, 0):  # calls until the first ticks have come through
            call(good, k, "warm-up", lambda push: ticks.append(push["data"]["i"]))
            if len(ticks) >= 5:
                break
        with slow_client(server.port):
            wait_for(lambda: len(server.registry) == 2, 10, message="the slow client to register")
            flood_record = server.scope["flood"]
            began = time.monotonic()
            calls_while_slow_connected = 0
            for k in range(1, 100_000):
                if len(server.registry) == 1:
                    break
                assert time.monotonic() - began < 30, "the slow client was never disconnected"
                call(good, k, {"k": k}, lambda push: ticks.append(push["data"]["i"]))
                calls_while_slow_connected += 1
            gone = time.monotonic()
            # Keep listening until the process has pushed 25 more ticks.
            after = ticks[-1] + 25
            for k in range(100_000, 101_000):
                call(good, k, k, lambda push: ticks.append(push["data"]["i"]))
                if ticks[-1] >= after:
                    break
        assert flood_record["done"].wait(10), "the flood handler never ended"
        return {"ticker": ticker, "ticks": ticks, "began": began, "gone": gone, "flood": flood_record,
                "calls": calls_while_slow_connected}
    finally:
        good.close()


def test_slow_consumer_does_not_slow_a_broadcasting_process(start):
    seen = slow_scenario(start)
    during = [duration for when, duration, _ in seen["ticker"].sends if seen["began"] <= when <= seen["gone"]]
    assert during, "the process sent nothing while the slow client was connected"
    # Process sends never wait: each one takes far less than a second, even the one that finds the queue full.
    assert max(during) < 0.5, f"a broadcast took {max(during):.2f}s"


def test_slow_consumer_does_not_stall_other_clients(start):
    seen = slow_scenario(start)
    ticks = seen["ticks"]
    # The good client got every tick from its first one on, none lost and none out of order.
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    # And it was served while the slow client's stream was stuck.
    assert seen["calls"] >= 5
    # The process kept broadcasting after the slow client was cut, and the good client got those ticks.
    sent_after = [i for when, _, i in seen["ticker"].sends if when > seen["gone"] and i <= ticks[-1]]
    assert len(sent_after) >= 5 and set(sent_after) <= set(ticks)
    # The slow client was cut, and its handler learnt it: its stream ended cancelled, not finished.
    flood_record = seen["flood"]
    assert 0 < flood_record["sent"] < 5000
    assert "cancelled" in flood_record


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.slow = threading.Event()

    def emit(self, record):
        if "too slowly" in record.getMessage():
            self.slow.set()


def test_slow_consumer_handler_waits_then_disconnects_with_1008(start):
    server = start({"send_queue_size": 8, "send_timeout": 0.5})
    records = _Records()
    logging.getLogger("igor").addHandler(records)
    good = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=10)
    try:
        with slow_client(server.port, first=64 * 1024) as sock:
            wait_for(lambda: server.scope["flood"]["sent"] > 0, 10, message="the flood to start")
            served = 0
            for k in range(100_000):
                if records.slow.is_set():
                    break
                call(good, k, {"k": k})
                served += 1
                assert k < 50_000, "the slow client was never found slow"
            # The slow client's stream was stuck while the good client was served.
            assert served >= 5
            assert 0 < server.scope["flood"]["sent"] < 5000
            # It reads again now: it gets what was queued, every frame whole, then close 1008.
            sock.settimeout(10)
            indices = []
            for _ in range(6000):
                fin, opcode, payload = wsraw.recv_frame(sock)
                assert fin
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big")
                    break
                assert opcode == 0x1
                message = json.loads(payload)
                if "data" in message:
                    indices.append(message["data"]["i"])
            else:
                raise AssertionError("no close frame")
            assert code == 1008
            assert indices == list(range(len(indices)))
        assert server.scope["flood"]["done"].wait(10)
        assert "cancelled" in server.scope["flood"]
        wait_for(lambda: len(server.registry) == 1, 10, message="the slow client to be removed")
        call(good, "after", "still served")
    finally:
        logging.getLogger("igor").removeHandler(records)
        good.close()


def wait_until_flood_stuck(server) -> None:
    """Wait until the flood handler has stopped making progress: the slow client's queue is full."""
    record = server.scope["flood"]
    wait_for(lambda: record["sent"] > 0, 10, message="the flood to start")
    last = [record["sent"], time.monotonic()]

    def stuck():
        if record["sent"] != last[0]:
            last[:] = [record["sent"], time.monotonic()]
        return time.monotonic() - last[1] > 0.3

    wait_for(stuck, 10, message="the flood to get stuck")
    assert not record["done"].is_set()


def test_slow_client_that_hangs_up_is_released_at_once(start):
    server = start({"send_queue_size": 8, "send_timeout": 8.0})
    sock = slow_client(server.port)
    wait_for(lambda: len(server.registry) == 1, 10, message="the slow client to register")
    wait_until_flood_stuck(server)
    hung_up = time.monotonic()
    sock.close()
    # Well under send_timeout (8 s): the server sees the hang-up at once.
    wait_for(lambda: len(server.registry) == 0, 8, message="the client to be removed")
    removed = time.monotonic() - hung_up
    assert server.scope["flood"]["done"].wait(8)
    released = time.monotonic() - hung_up
    assert removed < 2.0 and released < 2.0, f"removed after {removed:.1f}s, handler released after {released:.1f}s"


def test_shutdown_is_not_held_up_by_a_slow_client(start):
    server = start({"send_queue_size": 8, "send_timeout": 8.0, "shutdown_timeout": 1.0})
    with slow_client(server.port):
        wait_for(lambda: len(server.registry) == 1, 10, message="the slow client to register")
        wait_until_flood_stuck(server)
        began = time.monotonic()
        server.shutdown()
        took = time.monotonic() - began
    assert took < 4.0, f"shutdown took {took:.1f}s with shutdown_timeout 1 s (send_timeout 8 s)"
    assert not server.running


def test_close_ends_a_connection_whose_writer_is_blocked(start):
    server = start({"ping_interval": None})
    # One 8 MB message the client never reads: the writer is stuck in it, the queue behind it is empty.
    with slow_client(server.port, n=1) as sock:
        wait_for(lambda: len(server.registry) == 1, 10, message="the slow client to register")
        assert server.scope["flood"]["done"].wait(10) and server.scope["flood"]["sent"] == 1
        wsraw.send_frame(sock, 0x1, json.dumps({"streamId": "k", "action": "kick"}).encode())
        # close() must end the connection within a bounded time (CLOSE_HANDSHAKE_TIMEOUT is 2 s).
        wait_for(lambda: len(server.registry) == 0, 8, message="the kicked client to be removed")


# -- many threads writing to one client ---------------------------------------------------


def test_eight_streams_of_1000_and_a_5mb_message_to_one_client(start):
    server = start({})
    with wsraw.connect(server.port, timeout=30) as sock:
        for s in range(8):
            wsraw.send_frame(sock, 0x1, json.dumps({"streamId": f"s{s}", "action": "count",
                                                    "data": {"n": 1000, "tag": s}}).encode())
        wsraw.send_frame(sock, 0x1, json.dumps({"streamId": "big", "action": "big", "data": BIG}).encode())
        received = {f"s{s}": [] for s in range(8)}
        received["big"] = []
        closed = set()
        for _ in range(8 * 1000 + 20):
            fin, opcode, payload = wsraw.recv_frame(sock)
            assert (fin, opcode) == (True, 0x1)
            message = json.loads(payload.decode("utf-8"))
            stream_id = message["streamId"]
            assert stream_id not in closed, "a message after its stream's close"
            if message.get("close"):
                assert message == {"streamId": stream_id, "data": None, "close": True}
                closed.add(stream_id)
                if len(closed) == 9:
                    break
            else:
                assert set(message) == {"streamId", "data"}
                received[stream_id].append(message["data"])
        assert len(closed) == 9
    for s in range(8):
        assert received[f"s{s}"] == [{"i": i, "tag": s, "pad": "p" * (i % 50)} for i in range(1000)]
    assert len(received["big"]) == 1 and received["big"][0] == pattern(BIG)
