"""The Python client: calls, streams, cancel, timeouts, pushes, and a dropped connection."""

import queue
import threading

import pytest

from igor import CallTimeout, ConnectionClosed, IgorProcess, RemoteError


def count(out, data):
    for i in range(data):
        if out.wait(0.005):
            return
        out.send(i)


def forever(out, data):
    i = 0
    while not out.wait(0.005):
        out.send(i)
        i += 1


class Pusher(IgorProcess):
    def run(self):
        while not self.wait(0.01):
            self.output.send("ping", "p")


def test_call_stream_and_context_manager(start_server, connect):
    server = start_server({"count": count})
    client = connect(server)
    assert client.call("count", 3) == 2
    assert list(client.stream("count", 5)) == [0, 1, 2, 3, 4]
    assert client.call("count", 0) is None


def test_cancel_ends_iteration_and_the_server_stream(start_server, connect):
    cancelled = threading.Event()

    def watched(out, data):
        forever(out, data)
        cancelled.set()

    client = connect(start_server({"forever": watched, "count": count}))
    stream = client.stream("forever")
    values = [next(stream) for _ in range(3)]
    stream.cancel()
    assert values == [0, 1, 2] and list(stream) == []
    assert cancelled.wait(5)
    assert client.call("count", 2) == 1  # the connection is fine


def test_timeout_raises_and_cancels(start_server, connect):
    gone = threading.Event()

    def slow(out, data):
        out.wait(10)
        gone.set()

    client = connect(start_server({"slow": slow}))
    with pytest.raises(CallTimeout):
        client.call("slow", timeout=0.2)
    assert gone.wait(5)


def test_remote_error_fields(start_server, connect):
    client = connect(start_server({"count": count}))
    with pytest.raises(RemoteError) as info:
        client.call("missing")
    assert (info.value.code, info.value.type) == (404, "UnknownAction")
    assert "missing" in str(info.value)


def test_push_listeners(start_server, connect):
    client = connect(start_server(processes={"pusher": Pusher()}))
    by_action, everything = queue.Queue(), queue.Queue()
    remove = client.on("ping", by_action.put)
    client.on(None, everything.put)
    assert by_action.get(timeout=5) == "p"
    assert everything.get(timeout=5) == {"streamId": "pusher", "action": "ping", "data": "p"}
    remove()
    while not by_action.empty():
        by_action.get_nowait()
    everything.get(timeout=5)
    everything.get(timeout=5)  # two more pushes arrived...
    assert by_action.empty()  # ...and none reached the removed listener


def test_call_fails_clearly_when_the_server_goes_away(start_server, connect):
    server = start_server({"forever": forever})
    client = connect(server)
    stream = client.stream("forever")
    next(stream)
    server.shutdown()
    list(stream)  # ends: the shutdown closes every stream before the connection
    assert client.wait_closed(5) and client.close_code == 1001
    with pytest.raises(ConnectionClosed):
        client.call("forever")


def test_errors_without_a_stream_are_collected(start_server, connect):
    client = connect(start_server({"count": count}))
    client._ws.send("not json")
    error = client.errors.get(timeout=5)
    assert error.code == 400
