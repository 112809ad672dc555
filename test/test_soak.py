"""Soak: long runs must leave no threads behind and must not grow memory without bound."""

from __future__ import annotations

import gc
import json
import threading
import tracemalloc

import pytest
import websocket
from conftest import wait_for

from igor import IgorServer

CALLS = 20_000
CYCLES = 2_000
# Generous: a leak of 100 bytes per call or per connection would go past it.
MEMORY_BOUND = 2 * 1024 * 1024


def echo(out, data):
    return data


def stream(out, data):
    for i in range(data):
        out.send(i)


def connection_threads():
    return [t for t in threading.enumerate()
            if t.name.startswith(("igor-writer", "igor-worker")) or "process_request" in t.name]


@pytest.fixture(scope="module")
def server():
    # Servers of earlier test modules may still be ending their connections: start from a quiet process.
    wait_for(lambda: not connection_threads(), 20, message="earlier connection threads to end")
    igor = IgorServer({"echo": echo, "stream": stream},
                      {"port": 0, "worker_idle_timeout": 0.2, "session_timeout": 0.5})
    igor.run_forever(threaded=True)
    igor.baseline_threads = threading.active_count()
    yield igor
    igor.shutdown()


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def traced_memory() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def thread_summary() -> str:
    names = {}
    for thread in threading.enumerate():
        names[thread.name.split(" ")[0]] = names.get(thread.name.split(" ")[0], 0) + 1
    return repr(names)


def assert_back_to_baseline(server) -> None:
    # Idle workers end after worker_idle_timeout, connection threads after the close handshake.
    try:
        wait_for(lambda: threading.active_count() <= server.baseline_threads, 15, message="threads back to baseline")
    except AssertionError:
        raise AssertionError(f"{threading.active_count()} threads, baseline {server.baseline_threads}: "
                             f"{thread_summary()}") from None
    wait_for(lambda: len(server.registry) == 0, 5, message="no client left registered")


def call(ws, stream_id, data):
    ws.send(json.dumps({"streamId": stream_id, "action": "echo", "data": data}))
    assert json.loads(ws.recv()) == {"streamId": stream_id, "data": data}
    assert json.loads(ws.recv()) == {"streamId": stream_id, "data": None, "close": True}


def test_20000_calls_in_sequence_on_one_connection(server, traced):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=10)
    try:
        for k in range(500):  # warm-up: caches, the worker thread, the logger
            call(ws, k, {"k": k})
        before = traced_memory()
        for k in range(CALLS):
            call(ws, k % 1000, {"k": k, "text": "soak é"})
        ws.send(json.dumps({"streamId": "s", "action": "stream", "data": 100}))
        assert [json.loads(ws.recv()) for _ in range(101)] == (
            [{"streamId": "s", "data": i} for i in range(100)] + [{"streamId": "s", "data": None, "close": True}])
        growth = traced_memory() - before
    finally:
        ws.close()
    assert growth < MEMORY_BOUND, f"memory grew by {growth} bytes over {CALLS} calls"
    assert_back_to_baseline(server)


def test_2000_connect_disconnect_cycles(server, traced):
    url = f"ws://127.0.0.1:{server.port}/"
    for _ in range(50):  # warm-up
        websocket.create_connection(url, timeout=10).close()
    before = traced_memory()
    for k in range(CYCLES):
        ws = websocket.create_connection(url, timeout=10)
        try:
            if k % 20 == 0:
                call(ws, k, k)
        finally:
            ws.close()
    assert_back_to_baseline(server)
    # Sessions of gone clients are parked for session_timeout, then purged.
    time_to_purge = server.config.session_timeout + 2
    wait_for(lambda: traced_memory() - before < MEMORY_BOUND, time_to_purge,
             message="memory to come back within bound")
    ws = websocket.create_connection(url, timeout=10)
    try:
        call(ws, "after", "still serving")
    finally:
        ws.close()
