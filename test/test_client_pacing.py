"""The Python client's downloads in bounded memory, paced by a slow consumer (issue #19).

A stream's inbox holds at most ``max_buffer`` bytes; past that the
client's reader stops reading the socket until the caller takes a value,
so the server's ``send_chunks`` waits too. What frees the reader: a value
taken, a cancel (``break``, ``cancel=``), close(), the stream's timeout.
"""

import os
import threading
import time

import pytest
from conftest import wait_for

from igor import CallTimeout, ConnectionClosed, IgorClient, StreamCancelled
from igor.client_stream import MAX_STREAM_BUFFER

MiB = 1 << 20


def api(seen):
    def push(out, data):
        """``data`` MiB in 1 MiB chunks, counting those made: how far the server runs ahead of the caller."""
        seen["made"] = 0

        def chunks():
            for _ in range(data):
                seen["made"] += 1
                yield bytes(MiB)

        try:
            out.send_chunks(chunks(), size=data * MiB)
        except StreamCancelled:
            seen["cancelled"] = True
            raise

    def texts(out, data):
        out.receive()  # the caller has set its stream's bound
        for _ in range(data):
            out.send({"text": "x" * 8192})

    return {"push": push, "texts": texts, "echo": lambda out, data: data}


def slowly(seconds):
    # The slowness under test: a consumer slower than the socket, not a wait for anything.
    time.sleep(seconds)


def filled(stream):
    """True once the next 1 MiB chunk does not fit: the reader is waiting for the caller."""
    return stream.buffered + MiB > stream.max_buffer


def test_a_slow_consumer_holds_at_most_the_bound_and_paces_the_server(start_server, connect):
    seen = {}
    client = connect(start_server(api(seen)))
    stream = client.stream("push", 256)
    assert stream.max_buffer == MAX_STREAM_BUFFER == 8 * MiB
    assert next(stream) == {"transfer": {"size": 256 * MiB, "name": None, "type": None}}
    wait_for(lambda: filled(stream), message="the inbox to fill")
    received = ahead = 0
    for value in stream:
        if isinstance(value, bytes):
            received += len(value)
            ahead = max(ahead, seen["made"] - received // MiB)
            slowly(0.004)  # 256 MiB at 250 MiB/s: slower than the loopback's GiB/s
    assert received == 256 * MiB
    assert stream.max_buffered <= MAX_STREAM_BUFFER
    # The server ran ahead by what the inbox, the two sockets and its backlog hold, not by the whole download.
    assert ahead < 64, f"the server made {ahead} chunks more than the caller had taken"


def test_json_values_count_their_strings_against_a_bound_of_the_callers_choice(start_server, connect):
    client = connect(start_server(api({})))
    stream = client.stream("texts", 200)  # 1.6 MiB of strings
    stream.max_buffer = 256 * 1024
    stream.send("go")
    # The caller takes nothing until the next value does not fit: the reader waits for it.
    wait_for(lambda: stream.buffered + 8192 > stream.max_buffer, message="the inbox to fill")
    count = 0
    for value in stream:
        assert value == {"text": "x" * 8192}
        count += 1
    assert count == 200
    assert stream.max_buffered <= 256 * 1024


class SlowSink:
    """A file-like whose write takes ``pause`` seconds a chunk, keeping nothing."""

    def __init__(self, pause):
        self.pause = pause
        self.written = 0

    def write(self, chunk):
        slowly(self.pause)
        self.written += len(chunk)
        return len(chunk)


def peak_growth(run):
    """What ``run()`` made this process's resident memory grow by, at its peak (VmHWM, reset first)."""
    def memory(key):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(key)

    before = memory("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    result = run()
    return memory("VmHWM") - before, result


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")
def test_a_download_into_a_slow_sink_grows_the_client_by_little(server_process):
    """256 MiB into a sink slower than the socket: the client grows by the bound, not the download."""
    _, url = server_process
    with IgorClient(url, timeout=30) as client:
        client.download("push", 8, to=SlowSink(0))  # warm up the allocator's pools
        sink = SlowSink(0.004)
        grown, count = peak_growth(lambda: client.download("push", 256, to=sink))
        assert count == sink.written == 256 * MiB
        assert grown < 48 * MiB, f"the client grew by {grown / MiB:.1f} MiB"


def test_a_break_while_the_reader_waits_frees_it(start_server, connect):
    seen = {}
    client = connect(start_server(api(seen)))
    stream = client.stream("push", 100_000)
    for value in stream:
        if isinstance(value, bytes):
            wait_for(lambda: filled(stream), message="the inbox to fill")
            break  # cancels the stream
    assert stream.cancelled and stream.buffered == 0
    assert client.call("echo", "after", timeout=5) == "after"
    wait_for(lambda: seen.get("cancelled"), message="the handler to see the cancel")


def test_a_cancelled_download_stuck_in_its_sink_frees_the_connection(start_server, connect):
    """The caller is stuck in ``to.write``; its cancel event still lets the other calls through."""
    seen = {}
    client = connect(start_server(api(seen)))
    release, writing = threading.Event(), threading.Event()
    cancel = threading.Event()
    errors = []

    class StuckSink:
        def write(self, chunk):
            writing.set()
            release.wait(10)

    def run():
        try:
            client.download("push", 100_000, to=StuckSink(), cancel=cancel, timeout=None)
        except StreamCancelled as exc:
            errors.append(exc)

    downloading = threading.Thread(target=run, daemon=True)
    downloading.start()
    assert writing.wait(5)
    stream = wait_for(lambda: next(iter(client._streams.values()), None), message="the download's stream")
    wait_for(lambda: filled(stream), message="the inbox to fill")
    cancel.set()
    assert client.call("echo", "through", timeout=5) == "through"
    assert stream.buffered == 0  # what waited was given back
    release.set()
    downloading.join(5)
    assert errors and not downloading.is_alive()
    wait_for(lambda: seen.get("cancelled"), message="the handler to see the cancel")


def test_close_while_the_reader_waits_returns_promptly(start_server, connect):
    client = connect(start_server(api({})))
    stream = client.stream("push", 100_000)
    next(stream)
    wait_for(lambda: filled(stream), message="the inbox to fill")
    started = time.monotonic()
    client.close()
    took = time.monotonic() - started
    assert took < 1.0, f"close() took {took:.2f}s"  # not the 3 s CLOSE_ANSWER_TIMEOUT, twice
    assert not client.connected
    with pytest.raises(ConnectionClosed):
        for _ in stream:
            pass


def test_a_stream_never_read_is_cancelled_after_its_timeout(start_server, connect):
    seen = {}
    client = connect(start_server(api(seen)))
    stream = client.stream("push", 100_000, timeout=0.5)
    wait_for(lambda: filled(stream), message="the inbox to fill")
    # Its data stands before this answer on the connection; its timeout lets the answer through.
    assert client.call("echo", "next", timeout=5) == "next"
    with pytest.raises(CallTimeout, match="no value was taken"):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)
    wait_for(lambda: seen.get("cancelled"), message="the handler to see the cancel")


def test_other_calls_wait_behind_a_slow_consumer_and_resume_as_it_takes_values(start_server, connect):
    """Head-of-line blocking, the trade-off: a call's answer comes once the slow stream's data before it is taken."""
    client = connect(start_server(api({})))
    stream = client.stream("push", 100_000, timeout=None)
    next(stream)
    wait_for(lambda: filled(stream), message="the inbox to fill")
    answered = threading.Event()
    answers = []

    def call():
        answers.append(client.call("echo", "behind", timeout=10))
        answered.set()

    threading.Thread(target=call, daemon=True).start()
    assert not answered.wait(0.3)  # the reader waits for this stream's caller: nothing else is read
    taken = 0
    while not answered.is_set():
        next(stream)
        taken += 1
        assert taken < 100_000
    assert answers == ["behind"] and taken > 1
    stream.cancel()


def test_a_paced_download_answers_the_heartbeat(start_server, connect):
    """The server's ping waits behind unread data; the waiting reader's pongs keep the connection."""
    server = start_server(api({}), config={"ping_interval": 0.2, "ping_timeout": 0.5})
    client = connect(server)
    sink = SlowSink(0.1)  # 10 MiB/s: the ping would reach the reader a second after it was sent
    assert client.download("push", 24, to=sink) == 24 * MiB
    assert client.connected and client.call("echo", 1) == 1


def test_a_stream_never_read_without_a_timeout_still_learns_that_the_server_dropped_it(start_server, connect):
    """The server finds the stuck backlog after its ``send_timeout`` and cuts the connection; the waiting
    reader's next keepalive fails, and it reads on to the end instead of waiting for ever."""
    server = start_server(api({}), config={"send_timeout": 0.5})
    client = connect(server)
    stream = client.stream("push", 100_000, timeout=None)
    wait_for(lambda: filled(stream), message="the inbox to fill")
    assert client.wait_closed(15), "the client never learnt the connection had ended"
    assert client.close_code in (1008, 1006)
    with pytest.raises(ConnectionClosed):
        client.call("echo", 1)
