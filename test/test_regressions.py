"""Faults found in review, each pinned by the test that reproduced it."""

import json
import os
import socket
import threading
import time

import pytest
import websocket
import wsraw
from conftest import wait_for

from igor import IgorClient, IgorServer, RemoteError
from igor.executor import WorkerPool


def test_worker_pool_runs_every_task_exactly_once_under_idle_timeouts():
    pool = WorkerPool(max_workers=512, idle_timeout=0.0005)  # workers time out constantly, racing submit()
    counts = [0] * 5000
    lock, done = threading.Lock(), threading.Event()

    def task(i):
        def run():
            with lock:
                counts[i] += 1
                if sum(counts) == len(counts):
                    done.set()
        return run

    for i in range(len(counts)):
        pool.submit(task(i))
        if i % 50 == 0:
            time.sleep(0.001)  # let workers go idle and time out between bursts
    assert done.wait(10), f"{counts.count(0)} tasks never ran"
    assert set(counts) == {1}
    assert not pool.stop(time.monotonic() + 5)


@pytest.mark.parametrize("max_workers", [1, 3])
def test_worker_pool_never_starts_more_than_max_workers_and_runs_what_waits(max_workers):
    pool = WorkerPool(max_workers=max_workers, idle_timeout=0.0005)
    gate, lock = threading.Event(), threading.Lock()
    running, peak, ran = [0], [0], []

    def task(i):
        def run():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            gate.wait(10)
            with lock:
                running[0] -= 1
                ran.append(i)
        return run

    for i in range(40):
        pool.submit(task(i))
    wait_for(lambda: running[0] == max_workers, message="the pool to fill")
    assert pool.threads() == max_workers
    gate.set()
    wait_for(lambda: len(ran) == 40, message="every queued task to run")
    assert sorted(ran) == list(range(40)) and peak[0] == max_workers
    assert not pool.stop(time.monotonic() + 5)


def test_lone_surrogate_stream_id_still_gets_answered(start_server):
    server = start_server({"echo": lambda out, data: data})
    ws = websocket.create_connection(server.url)
    ws.send('{"streamId": "\\ud800", "action": "echo", "data": "\\udfff"}')
    first, second = json.loads(ws.recv()), json.loads(ws.recv())
    assert first == {"streamId": "\ud800", "data": "\udfff"}
    assert second == {"streamId": "\ud800", "data": None, "close": True}
    ws.close()
    wait_for(lambda: len(server.registry) == 0, message="the client to leave cleanly")


def test_no_handshake_completes_after_shutdown(start_server):
    server = start_server({"hello": lambda out, data: "hi"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    wait_for(lambda: server.stats()["pending_handshakes"], message="the connection to be accepted")
    server.shutdown()
    try:
        sock.sendall(wsraw.request(server.port))
        status, _ = wsraw.read_http_head(sock)
    except OSError:
        status = 0
    assert status != 101
    sock.close()


def test_symlinked_index_outside_the_folder_is_not_served(start_server, tmp_path):
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("SECRET")
    os.symlink(tmp_path / "secret.txt", site / "sub" / "index.html")
    server = start_server(config={"static_dir": str(site)})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /sub/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert wsraw.read_http_head(sock)[0] == 404


def test_a_handshake_dribbled_byte_by_byte_is_cut_off(start_server):
    server = start_server(config={"handshake_timeout": 0.5})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    start = time.monotonic()
    with pytest.raises(OSError):
        for byte in wsraw.request(server.port) * 100:
            sock.send(bytes([byte]))
            time.sleep(0.05)  # the attack under test is slowness itself
            if time.monotonic() - start > 5:
                break
    assert time.monotonic() - start < 3
    sock.close()


def test_max_clients_holds_under_simultaneous_handshakes(start_server):
    server = start_server(config={"max_clients": 1})
    barrier = threading.Barrier(30, timeout=10)
    statuses = []

    def knock():
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        barrier.wait()
        sock.sendall(wsraw.request(server.port))
        statuses.append((wsraw.read_http_head(sock)[0], sock))

    threads = [threading.Thread(target=knock) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(status for status, _ in statuses) == [101] + [503] * 29
    assert len(server.registry) == 1
    for _, sock in statuses:
        sock.close()


def test_base_exception_in_a_handler_still_closes_the_stream(start_server, connect):
    class Odd(BaseException):
        pass

    def odd(out, data):
        out.send(1)
        raise Odd()

    client = connect(start_server({"odd": odd, "ok": lambda out, data: "fine"}))
    assert list(client.stream("odd")) == [1]
    assert client.call("ok") == "fine"


def test_url_of_a_wildcard_bind_is_loopback():
    server = IgorServer(config={"host": "0.0.0.0", "port": 5678, "token": "t"})
    assert server.url == "ws://127.0.0.1:5678/"


def test_python_client_closes_when_its_introduction_is_refused(start_server, connect):
    server = start_server()
    connect(server, client_id="taken")
    baseline = threading.active_count()
    with pytest.raises(RemoteError):
        IgorClient(server.url, client_id="taken")
    wait_for(lambda: threading.active_count() <= baseline, message="the refused client's threads to end")
