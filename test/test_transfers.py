"""Large transfers: client.upload / client.download against out.receive_file / send_file / send_chunks.

Paced by the server's ``read``, in bounded memory on the server (its RSS is
measured from /proc, with the server in its own process), with progress
and cancel that gives everything back.
"""

import hashlib
import io
import os
import threading

import pytest
from conftest import wait_for

from igor import IgorClient, InboxFull, RemoteError, StreamCancelled, StreamClosed

MiB = 1 << 20


def api(seen=None):
    seen = seen if seen is not None else {}

    def count(out, data):
        digest, size = hashlib.sha256(), 0
        for chunk in out:
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest(), "data": data}

    def save(out, data):
        return out.receive_file(data)

    def slow(out, data, server):
        size = 0
        for chunk in out:
            seen["held"] = max(seen.get("held", 0), server.stats()["held_bytes"])
            size += len(chunk)
            out.wait(0.002)  # a handler slower than the network
        return size

    def stuck(out, data):
        try:
            while True:
                seen.setdefault("chunks", threading.Event()).set()
                out.receive()
                out.wait(0.01)
        except StreamCancelled:
            seen["cancelled"] = True
            raise

    def push(out, data):
        try:
            out.send_chunks((bytes(MiB) for _ in range(data)), size=data * MiB, name="zeros", type="x/zeros")
        except StreamCancelled:
            seen["cancelled"] = True
            raise

    def send_file(out, data):
        return out.send_file(data)

    def unsized(out, data):
        out.send_chunks(iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]))

    return {"count": count, "save": save, "slow": slow, "stuck": stuck, "push": push, "send_file": send_file,
            "unsized": unsized}


def recorder(into):
    return lambda done, total: into.append((done, total))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_upload_takes_bytes_a_path_a_file_and_an_iterable(start_server, connect, tmp_path):
    client = connect(start_server(api()))
    data = os.urandom(3 * MiB + 5)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    with open(path, "rb") as file:
        for source, total in ((data, len(data)), (str(path), len(data)), (path, len(data)), (file, len(data)),
                              (io.BytesIO(data), None), (iter([data[:10], data[10:2 * MiB], data[2 * MiB:]]), None)):
            progress = []
            result = client.upload("count", source, {"name": "in.bin"}, chunk_size=MiB // 2,
                                   on_progress=recorder(progress))
            assert result == {"size": len(data), "sha256": sha(data), "data": {"name": "in.bin"}}, source
            assert progress[-1] == (len(data), total), source
            assert [done for done, _ in progress] == sorted(done for done, _ in progress)
            assert len(progress) > 3, source
    target = tmp_path / "out.bin"
    assert client.upload("save", data, str(target)) == len(data)
    assert target.read_bytes() == data


def test_a_paced_upload_into_a_slow_handler_never_overflows(start_server, connect):
    seen = {}
    # A small inbox and window: the pacing, not the budget, is what keeps this within bounds.
    server = start_server(api(seen), config={"inbox_size": 4, "max_client_memory": 4 * MiB})
    client = connect(server)
    assert client.hello["input_window"] == 256 * 1024
    chunk = 64 * 1024
    assert client.upload("slow", bytes(8 * MiB), chunk_size=chunk) == 8 * MiB
    # Two messages unread at most (inbox_size / 2; their heads and the call's data count a little
    # more), within the window's bytes: never the 429 a flood gets.
    assert chunk <= seen["held"] <= 2 * chunk + 4096


def test_an_unpaced_flood_of_the_same_gets_429(start_server, connect):
    server = start_server(api(), config={"inbox_size": 4, "max_client_memory": 4 * MiB})
    client = connect(server)
    stream = client.stream("slow")
    for _ in range(64):
        try:
            stream.send(bytes(64 * 1024))
        except StreamClosed:  # the error has come back already
            break
    with pytest.raises(RemoteError) as info:
        list(stream)
    assert info.value.code == 429 and info.value.type in (InboxFull.__name__, "InboxFull")


def test_download_to_bytes_a_path_and_a_file(start_server, connect, tmp_path):
    client = connect(start_server(api()))
    progress = []
    assert client.download("push", 3, on_progress=lambda done, of: progress.append((done, of))) == bytes(3 * MiB)
    assert progress == [(0, 3 * MiB), (MiB, 3 * MiB), (2 * MiB, 3 * MiB), (3 * MiB, 3 * MiB)]
    data = os.urandom(2 * MiB + 1)
    source = tmp_path / "picture.png"
    source.write_bytes(data)
    target = tmp_path / "copy.png"
    assert client.download("send_file", str(source), to=str(target)) == len(data)
    assert target.read_bytes() == data
    sink = io.BytesIO()
    assert client.download("send_file", str(source), to=sink) == len(data) and sink.getvalue() == data
    # What the header says: size, name and type from the file.
    assert next(iter(client.stream("send_file", str(source)))) == {
        "transfer": {"size": len(data), "name": "picture.png", "type": "image/png"}}
    progress = []
    assert client.download("unsized", on_progress=lambda done, of: progress.append((done, of))) == b"abcdef"
    assert progress[-1] == (6, None)


def settled(server, threads_before):
    stats = server.stats()
    return (stats["open_streams"] == 0 and stats["held_bytes"] == 0 and stats["busy_workers"] == 0
            and threading.active_count() <= threads_before)


def test_cancelling_an_upload_releases_everything(start_server, connect):
    seen = {}
    server = start_server(api(seen))
    client = connect(server)
    threads_before = threading.active_count()
    cancel = threading.Event()

    def on_progress(done, total):
        if done >= 2 * MiB:
            cancel.set()

    with pytest.raises(StreamCancelled):
        client.upload("stuck", bytes(64 * MiB), chunk_size=256 * 1024, on_progress=on_progress, cancel=cancel)
    wait_for(lambda: seen.get("cancelled"), message="the handler to see the cancel")
    wait_for(lambda: settled(server, threads_before), message="streams, bytes and threads given back")
    assert client.upload("count", b"abc") == {"size": 3, "sha256": sha(b"abc"), "data": None}


def test_cancelling_a_download_releases_everything(start_server, connect):
    seen = {}
    server = start_server(api(seen))
    client = connect(server)
    threads_before = threading.active_count()
    cancel = threading.Event()
    got = []

    def on_progress(done, total):
        got.append(done)
        if done >= 4 * MiB:
            cancel.set()

    with pytest.raises(StreamCancelled):
        client.download("push", 100_000, on_progress=on_progress, cancel=cancel)
    assert 4 * MiB <= got[-1] < 100 * MiB
    wait_for(lambda: seen.get("cancelled"), message="the handler to see the cancel")
    wait_for(lambda: settled(server, threads_before), message="streams, bytes and threads given back")


def test_a_cancel_while_waiting_for_the_answer_is_not_held_up(start_server, connect):
    """The handler reads nothing more: the cancel still ends the wait at once."""
    seen = {}
    server = start_server(api(seen))
    client = connect(server)
    cancel = threading.Event()
    done = threading.Event()
    errors = []

    def run():
        try:
            client.upload("stuck", bytes(64 * MiB), cancel=cancel, timeout=None)
        except StreamCancelled as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    seen.setdefault("chunks", threading.Event()).wait(5)
    cancel.set()
    assert done.wait(5) and errors


# -- a gibibyte each way, the server in its own process ---------------------------


def memory(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(key)


def growth_of(pid, run):
    """What ``run()`` made the process's resident memory grow by, at its peak (VmHWM, reset first)."""
    before = memory(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) starts again from now
    result = run()
    return memory(pid, "VmHWM") - before, result


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")
def test_a_gibibyte_each_way_in_bounded_server_memory(server_process):
    process, url = server_process
    with IgorClient(url, timeout=60) as client:
        # Warm up: the first large frame imports numpy, the first chunks size the allocator's pools.
        client.upload("count", bytes(8 * MiB))
        client.download("push", 8)
        progress = []
        grown, result = growth_of(process.pid, lambda: client.upload(
            "count", (bytes(MiB) for _ in range(1024)), size=1024 * MiB,
            on_progress=lambda done, total: progress.append(done)))
        assert result["size"] == 1024 * MiB
        assert grown < 64 * MiB, f"upload: the server grew by {grown / MiB:.1f} MiB"
        assert progress[-1] == 1024 * MiB and len(progress) > 100
        received = []

        class Sink:
            def write(self, chunk):
                received.append(len(chunk))

        grown, count = growth_of(process.pid, lambda: client.download("push", 1024, to=Sink()))
        assert count == sum(received) == 1024 * MiB
        assert grown < 64 * MiB, f"download: the server grew by {grown / MiB:.1f} MiB"
        assert client.call("stats")["held_bytes"] < 1024  # the stats call's own message, nothing more
