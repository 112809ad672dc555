"""The per-client bounds as invariants, each shown with a measured figure against a server in its own process.

Every reproduction of the issue that asked for them is here, as a test: a
call+cancel loop against handlers that ignore cancels (threads), inputs and
calls of pathological JSON shapes (memory, as parsed), a process that does
not read (its inbox), huge names and floods of small mistakes (the log),
idle connections filling ``max_clients`` (the app's own window), and a
shutdown with handlers of every kind still running. test_adversary.py then
drives random sequences of all of it and checks the same invariants after
each step.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import wsraw
from conftest import wait_for
from test_attacks import MiB, answer, call, connect, figures, messages, send, serve, text  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MEMORY_BOUND = 128 * MiB
#: Threads the server has besides handler workers: main, accept, heartbeat, supervisor, stdin, loop, writers.
FIXED_FEW = 16

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/<pid>/status")


class Drain(threading.Thread):
    """Reads every message of a connection, counting errors by (code, type), until the server closes it."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.errors, self.count, self.closes, self.lock = sock, {}, 0, 0, threading.Lock()
        self.start()

    def run(self):
        try:
            for message in messages(self.sock):
                with self.lock:
                    self.count += 1
                    self.closes += bool(message.get("close"))
                    if "error" in message:
                        key = (message["code"], message["type"])
                        self.errors[key] = self.errors.get(key, 0) + 1
        except OSError:
            pass


class Sampler(threading.Thread):
    """Samples the server's thread count and RSS every 20 ms until stopped: the peak is of every sample."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.threads, self.samples, self.stop = server, 0, 0, threading.Event()
        self.start()

    def run(self):
        while not self.stop.wait(0.02):
            self.threads = max(self.threads, self.server.threads())
            self.samples += 1

    def end(self):
        self.stop.set()
        self.join(5)
        return self.threads


def hang_up(sock):
    """Close a connection another thread is reading: close() alone would leave the socket open under its recv."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def pairs(action, count, data=30):
    """``count`` call+cancel pairs on one stream id: the typeahead pattern, every keystroke."""
    one = text({"streamId": 1, "action": action, "data": data}) + text({"streamId": 1, "cancel": True})
    return one * count


# -- threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["sleepy", "sleepy_async"])
def test_call_cancel_pairs_keep_a_clients_threads_within_max_streams(serve, action):
    max_streams = 128
    server = serve()
    base = server.threads()
    sock = connect(server.port)
    drain = Drain(sock)
    sampler = Sampler(server)
    started = time.monotonic()
    sock.sendall(pairs(action, 10_000))
    # Each pair ends in one close: the cancel's, or a refused call's after its 429.
    wait_for(lambda: drain.closes == 10_000, 60, interval=0.05, message="every pair answered")
    seconds = time.monotonic() - started
    peak = sampler.end()
    figures(f"10,000 call+cancel pairs of {action}", threads_before=base, threads_peak=peak,
            samples=sampler.samples, refused=drain.errors, seconds=round(seconds, 2))
    assert peak <= base + max_streams + FIXED_FEW
    # A call cancelled before a worker took it never runs; those that ran hold their slot: the rest are 429.
    # (An async one's slot frees when its task ends on the cancel; its to_thread holds a thread, and is refused.)
    assert set(drain.errors) <= {(429, "TooManyStreams")}
    # Another client is still served at once: the pool has room beyond one client's share.
    assert call(server.port, "echo", "still here") == "still here"
    hang_up(sock)


def test_rounds_of_calls_and_reconnects_keep_all_threads_within_max_workers(serve):
    max_workers = 64
    server = serve({"max_workers": max_workers, "max_streams": 32})
    base = server.threads()
    sampler = Sampler(server)
    for _ in range(12):  # each round's handlers outlive its connection, as the did
        sock = connect(server.port)
        drain = Drain(sock)
        sock.sendall(pairs("sleepy", 256, data=4))
        wait_for(lambda drain=drain: drain.closes == 256, 20, message="the round answered")
        hang_up(sock)
    peak = sampler.end()
    figures("12 rounds of 256 call+cancel pairs, then a reconnect", threads_before=base, threads_peak=peak,
            max_workers=max_workers)
    assert peak <= base + max_workers + FIXED_FEW
    # The sleepers end in 4 s; what waited behind them was dropped with its clients, so the pool frees at once.
    started = time.monotonic()
    assert call(server.port, "echo", 1) == 1
    assert time.monotonic() - started < 10


# -- memory, as parsed -----------------------------------------------------------------


def empty_dicts(size):
    return "[" + ",".join(["{}"] * (size // 3)) + "]"


def test_unread_input_of_many_small_values_is_bounded_as_parsed(serve):
    server = serve()
    sock = connect(server.port)
    send(sock, {"streamId": "in", "action": "never_reads"})
    wait_for(lambda: call(server.port, "stats")["open_streams"] == 2, message="the call to open")  # and stats
    rss_before = server.rss()
    payload = empty_dicts(640 * 1024)
    sock.sendall(b"".join(text(('{"streamId": "in", "data": ' + payload + "}").encode()) for _ in range(99)))
    failed = answer(sock, "in")
    growth = server.growth_since(rss_before)
    figures("99 inputs of 640 KiB [{},...] to a call that does not read", rss_growth=growth, answer=failed["type"])
    assert (failed["code"], failed["type"]) == (429, "InboxFull")
    assert growth < MEMORY_BOUND
    sock.close()


def test_call_data_of_blocked_handlers_is_in_the_budget(serve):
    server = serve({"max_message_size": 64 * MiB})
    sock = connect(server.port)
    rss_before = server.rss()
    payload = empty_dicts(32 * MiB)
    for stream_id in range(3):
        sock.sendall(text(f'{{"streamId": {stream_id}, "action": "block", "data": {payload}}}'.encode()))
    refused = [answer(sock, stream_id) for stream_id in range(3)]
    growth = server.growth_since(rss_before)
    figures("three 32 MiB calls of [{},...] to a handler that blocks", rss_growth=growth,
            answers=[m["type"] for m in refused])
    assert [(m["code"], m["type"]) for m in refused] == [(429, "OverBudget")] * 3
    assert growth < MEMORY_BOUND
    assert call(server.port, "echo", "ok") == "ok"
    sock.close()


def test_a_process_that_does_not_read_holds_a_bounded_share_per_sender(serve):
    server = serve({"max_message_size": 17 * MiB})
    flooder = connect(server.port)
    rss_before = server.rss()
    big = "x" * (16 * MiB)
    message = text({"process": "sink", "data": big})
    refused = []
    for _ in range(100):
        flooder.sendall(message)
    flooder.sendall(text({"streamId": "end", "action": "echo", "data": 1}))
    for reply in messages(flooder):
        if reply.get("process") == "sink":
            refused.append((reply["code"], reply["type"]))
        if reply.get("streamId") == "end":
            break
    growth = server.growth_since(rss_before)
    # Someone else still gets in: the flooder's share is its own.
    other = connect(server.port)
    send(other, {"process": "sink", "data": "mine"})
    send(other, {"streamId": 1, "action": "echo", "data": 2})
    first = next(messages(other))
    figures("100 messages of 16 MiB to a process that does not read", rss_growth=growth, refused=len(refused))
    assert first == {"streamId": 1, "data": 2}, first  # no 429 for the other client
    assert set(refused) == {(429, "OverBudget")} and len(refused) >= 95
    assert growth < MEMORY_BOUND
    # What the flooder left unread goes with it (the figure is Igor's count: freed memory need not leave RSS).
    assert call(server.port, "stats")["held_bytes"] > 48 * MiB
    flooder.close()
    wait_for(lambda: call(server.port, "stats")["held_bytes"] < MiB, message="the flooder's messages to be dropped")
    other.close()


# -- bad input stays small -------------------------------------------------------------


def test_huge_names_are_400_and_never_echoed(serve):
    server = serve()
    sock = connect(server.port)
    name = "a" * MiB
    send(sock, {"streamId": 1, "action": name})
    send(sock, {"process": name, "data": 1})
    send(sock, {"streamId": name, "action": "echo"})
    replies = []
    while len(replies) < 3:
        _, _, payload = wsraw.recv_frame(sock)
        if b'"error"' in payload:
            replies.append(payload)
    figures("names of 1 MiB", reply_bytes=[len(r) for r in replies])
    assert all(len(reply) < 1024 for reply in replies)
    assert [json.loads(r)["code"] for r in replies] == [400, 400, 400]
    assert max(len(line) for line in server.stderr().splitlines()) < 1024
    sock.close()


def test_a_flood_of_mistakes_is_a_few_log_lines(serve):
    server = serve()
    sock = connect(server.port)
    drain = Drain(sock)
    sock.sendall(text({"streamId": 1, "action": "no such"}) * 20_000)
    wait_for(lambda: drain.closes == 20_000, 30, message="every mistake answered")
    hang_up(sock)
    wait_for(lambda: "more mistakes" in server.stderr(), 10, message="the count of the rest")
    lines = server.stderr().splitlines()
    figures("20,000 calls of an unknown action", log_lines=len(lines))
    assert len(lines) < 20
    assert any("19995 more mistakes" in line for line in lines), lines


def test_nan_and_infinity_are_400(serve):
    server = serve()
    sock = connect(server.port)
    for stream_id, constant in enumerate(["NaN", "Infinity", "-Infinity"]):
        sock.sendall(text(b'{"streamId": %d, "action": "echo", "data": [1, %s]}' % (stream_id, constant.encode())))
        reply = answer(sock, stream_id)
        assert (reply["code"], reply["type"]) == (400, "ProtocolError"), reply
    assert "Traceback" not in server.stderr()
    sock.close()


# -- the app's own window against idle connections --------------------------------------


def test_idle_connections_cannot_lock_the_window_out(serve):
    server = serve({"max_clients": 64})
    idle = [connect(server.port) for _ in range(64)]
    assert wsraw.handshake_status(server.port, wsraw.request(server.port)) == 503  # full, and all are fresh
    started = time.monotonic()
    while True:  # the window retries, as the clients' reconnect does
        try:
            window = connect(server.port, timeout=2)
            break
        except (AssertionError, OSError):
            assert time.monotonic() - started < 5, "the window was kept out"
            time.sleep(0.25)
    admitted = time.monotonic() - started
    send(window, {"streamId": 1, "action": "echo", "data": "in"})
    assert answer(window, 1)["data"] == "in"
    figures("a window against 64 idle connections", admitted_after_s=round(admitted, 2))
    assert admitted < 5
    # Evicted once it spoke? Never: a connection that sent a message keeps its place.
    for _ in range(3):
        try:
            connect(server.port, timeout=2).close()
        except (AssertionError, OSError):
            pass
    send(window, {"streamId": 2, "action": "echo", "data": "still"})
    assert answer(window, 2)["data"] == "still"
    for sock in idle:
        sock.close()


# -- the blocking loop, and a shutdown with everything still running ---------------------


def test_an_async_handler_blocking_the_loop_is_named(serve):
    server = serve()
    sock = connect(server.port)
    send(sock, {"streamId": 1, "action": "blocks_loop", "data": 1.6})
    wait_for(lambda: "blocked the event loop" in server.stderr(), 10, message="the warning")
    line = next(line for line in server.stderr().splitlines() if "blocked the event loop" in line)
    assert "blocks_loop" in line, line
    sock.close()


API_MODULE = '''
import asyncio, time

STARTED = []

def sleepy(out, data):
    STARTED.append(1)
    time.sleep(60)

async def in_thread(out, data):
    await asyncio.to_thread(lambda: STARTED.append(1) or time.sleep(60))

async def blocks_loop(out, data):
    STARTED.append(1)
    time.sleep(60)

def started(out, data):
    return len(STARTED)

API = {"sleepy": sleepy, "in_thread": in_thread, "blocks_loop": blocks_loop, "started": started}
'''


@pytest.mark.parametrize("actions", [["sleepy"], ["in_thread"], ["blocks_loop"], ["sleepy", "in_thread",
                                                                                     "blocks_loop"]])
def test_exit_with_parent_within_two_seconds_whatever_still_runs(tmp_path, actions):
    (tmp_path / "slowapi.py").write_text(API_MODULE)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "igor", "slowapi:API", "--no-token", "--exit-with-parent"],
                            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        ready = json.loads(proc.stdout.readline().split(" ", 1)[1])
        sock = connect(ready["port"])
        for stream_id, action in enumerate(actions):
            send(sock, {"streamId": stream_id, "action": action})
        wait_for(lambda: call(ready["port"], "started") == len(actions), message="every handler inside its sleep")
        started = time.monotonic()
        proc.stdin.close()
        code = proc.wait(15)
        seconds = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    figures(f"exit with parent, {'+'.join(actions)} running", exit_seconds=round(seconds, 2), code=code)
    assert code == 0, stderr
    assert seconds < 2.0, stderr
    assert "abandoned" in stderr and all(action in stderr for action in actions), stderr
    assert "Task was destroyed" not in stderr and "Traceback" not in stderr, stderr
