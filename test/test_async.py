"""``async def`` handlers and async generators, against the real server.

They all run on one event loop thread the server owns, beside sync handlers
on worker threads; these tests check what a handler author relies on: values
and yields arrive, errors and exits behave as for sync handlers, a cancel or
a client leaving cancels the task, awaits interleave, and nothing of the loop
outlives the server.
"""

import asyncio
import functools
import json
import queue
import threading

import pytest
import websocket
from conftest import recv_json, recv_until_close, wait_for

from igor import IgorServer, RemoteError


def loop_threads():
    return [t for t in threading.enumerate() if t.name == "igor-asyncio"]


def busy_workers(server):
    """Workers running something now: an async handler's send uses one only while it waits for room."""
    return server.stats()["busy_workers"]


# -- values, streams and mixed APIs ------------------------------------------------


def test_sync_and_async_handlers_in_one_api(start_server, connect):
    def sync_hello(out, data):
        out.send("sync " + data)

    async def async_hello(out, data):
        await asyncio.sleep(0)
        return "async " + data

    async def async_sends(out, data, client_id):
        await out.asend(client_id)
        await out.asend(data * 2)

    client = connect(start_server({"sync": sync_hello, "async": {"hello": async_hello, "sends": async_sends}}))
    assert client.call("sync", "a") == "sync a"
    assert client.call("async.hello", "b") == "async b"
    assert list(client.stream("async.sends", 21)) == [1, 42]


def test_a_sync_wrapper_around_an_async_handler_runs_it_on_the_loop(start_server, connect):
    # A decorator written without async def: the function is sync, what it returns is not.
    def logged(handler):
        @functools.wraps(handler)
        def wrapper(out, data):
            return handler(out, data)
        return wrapper

    @logged
    async def coroutine(out, data):
        await asyncio.sleep(0)
        return threading.current_thread().name

    @logged
    async def generator(out, data):
        yield threading.current_thread().name

    client = connect(start_server({"coroutine": coroutine, "generator": generator}))
    assert client.call("coroutine") == "igor-asyncio"
    assert list(client.stream("generator")) == ["igor-asyncio"]


def test_async_generator_streams_each_yield_in_order(start_server):
    async def count(out, data):
        for i in range(data):
            await asyncio.sleep(0)
            yield {"i": i}

    server = start_server({"count": count})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 7, "action": "count", "data": 3}))
    assert recv_until_close(ws, 7) == [
        {"streamId": 7, "data": {"i": 0}},
        {"streamId": 7, "data": {"i": 1}},
        {"streamId": 7, "data": {"i": 2}},
        {"streamId": 7, "data": None, "close": True},
    ]
    ws.close()


def test_async_handlers_run_on_one_loop_thread_the_server_owns(start_server, connect):
    async def where(out, data):
        return [threading.current_thread().name, id(asyncio.get_running_loop())]

    client = connect(start_server({"where": where}))
    first, second = client.call("where"), client.call("where")
    assert first == second
    assert first[0] == "igor-asyncio"


def test_a_waiting_async_handler_does_not_block_others(start_server, connect):
    entered = threading.Event()

    async def waits_for_input(out, data):
        entered.set()
        return "got " + await out.areceive()

    async def quick(out, data):
        await asyncio.sleep(0)
        return data

    server = start_server({"wait": waits_for_input, "quick": quick})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "w", "action": "wait"}))
    assert entered.wait(5)
    # The first handler is suspended in its await: the loop runs the others meanwhile.
    client = connect(server)
    assert [client.call("quick", n) for n in range(5)] == list(range(5))
    ws.send(json.dumps({"streamId": "w", "data": "it"}))
    assert recv_until_close(ws, "w") == [{"streamId": "w", "data": "got it"},
                                         {"streamId": "w", "data": None, "close": True}]
    ws.close()


def test_many_async_handlers_interleave_at_their_awaits(start_server, connect):
    # Each waits for all the others to have started: only possible if they interleave on the loop.
    arrived = {"count": 0}
    all_in = {}

    async def rendezvous(out, data):
        event = all_in.setdefault("event", asyncio.Event())
        arrived["count"] += 1
        if arrived["count"] == data:
            event.set()
        await asyncio.wait_for(event.wait(), 5)
        return arrived["count"]

    client = connect(start_server({"meet": rendezvous}))
    streams = [client.stream("meet", 10, timeout=10) for _ in range(10)]
    assert [list(s) for s in streams] == [[10]] * 10


def test_aclose_ends_the_stream_early(start_server):
    after = queue.Queue()

    async def early(out, data):
        await out.asend(1)
        await out.aclose()
        after.put(out.closed)
        await out.aclose()  # a second close does nothing, as close() does

    server = start_server({"early": early})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "early"}))
    assert recv_until_close(ws, 1) == [{"streamId": 1, "data": 1}, {"streamId": 1, "data": None, "close": True}]
    assert after.get(timeout=5) is True
    # The same id may be used again at once: the stream was forgotten before its close went out.
    ws.send(json.dumps({"streamId": 1, "action": "early"}))
    assert recv_until_close(ws, 1) == [{"streamId": 1, "data": 1}, {"streamId": 1, "data": None, "close": True}]
    ws.close()


# -- input -------------------------------------------------------------------------


def test_areceive_reads_input_until_the_client_ends_it(start_server):
    async def total(out, data):
        from igor import InputEnded

        total = 0
        while True:
            try:
                total += await out.areceive(timeout=5)
            except InputEnded:
                return total
            await out.asend(total)

    server = start_server({"total": total})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "total"}))
    for n in (1, 2, 3):
        ws.send(json.dumps({"streamId": 1, "data": n}))
    ws.send(json.dumps({"streamId": 1, "end": True}))
    assert [m.get("data") for m in recv_until_close(ws, 1)] == [1, 3, 6, 6, None]
    ws.close()


def test_sync_receive_and_async_areceive_side_by_side(start_server):
    def sync_echo(out, data):
        for value in out:
            out.send(["sync", value])

    async def async_echo(out, data):
        from igor import InputEnded

        while True:
            try:
                await out.asend(["async", await out.areceive()])
            except InputEnded:
                return

    server = start_server({"sync": sync_echo, "async": async_echo})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "s", "action": "sync"}))
    ws.send(json.dumps({"streamId": "a", "action": "async"}))
    for n in range(3):
        ws.send(json.dumps({"streamId": "s", "data": n}))
        ws.send(json.dumps({"streamId": "a", "data": n}))
    ws.send(json.dumps({"streamId": "s", "end": True}))
    ws.send(json.dumps({"streamId": "a", "end": True}))
    messages = [recv_json(ws) for _ in range(8)]
    for stream_id, kind in (("s", "sync"), ("a", "async")):
        mine = [m for m in messages if m["streamId"] == stream_id]
        assert mine == [{"streamId": stream_id, "data": [kind, n]} for n in range(3)] + \
            [{"streamId": stream_id, "data": None, "close": True}]
    ws.close()


def test_areceive_timeout_raises_input_timeout(start_server, connect):
    async def impatient(out, data):
        from igor import InputTimeout

        try:
            await out.areceive(timeout=0.05)
        except InputTimeout as exc:
            return str(exc)
        return "no timeout"

    client = connect(start_server({"impatient": impatient}))
    assert "within 0.05s" in client.call("impatient")


# -- cancels and disconnects cancel the task ---------------------------------------


@pytest.mark.parametrize("how", ["cancel", "disconnect"])
def test_cancel_or_leaving_cancels_the_task(start_server, connect, how):
    started, outcome = threading.Event(), queue.Queue()

    async def forever(out, data):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.put(("cancelled", out.cancelled))
            raise
        outcome.put(("woke", out.cancelled))

    server = start_server({"forever": forever})
    client = connect(server)
    stream = client.stream("forever")
    assert started.wait(5)
    if how == "cancel":
        stream.cancel()
    else:
        client.close()
    assert outcome.get(timeout=5) == ("cancelled", True)
    wait_for(lambda: server.stats()["open_streams"] == 0, message="the stream to be forgotten")


def test_cancel_while_blocked_in_areceive(start_server):
    started, outcome = threading.Event(), queue.Queue()

    async def listens(out, data):
        started.set()
        try:
            await out.areceive()
        except asyncio.CancelledError:
            outcome.put("cancelled")
            raise

    server = start_server({"listen": listens})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 3, "action": "listen"}))
    assert started.wait(5)
    ws.send(json.dumps({"streamId": 3, "cancel": True}))
    assert recv_json(ws) == {"streamId": 3, "close": True, "cancelled": True, "data": None}
    assert outcome.get(timeout=5) == "cancelled"
    ws.close()


def test_cancelling_an_async_generator_stream_runs_its_finally(start_server, connect):
    closed = queue.Queue()

    async def endless(out, data):
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            closed.put(out.cancelled)

    client = connect(start_server({"endless": endless}))
    stream = client.stream("endless")
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.cancel()
    assert closed.get(timeout=5) is True


# -- errors and exits --------------------------------------------------------------


def test_an_async_handler_that_raises_gets_a_500_like_a_sync_one(start_server, connect):
    def sync_fails(out, data):
        raise KeyError("missing")

    async def async_fails(out, data):
        await asyncio.sleep(0)
        raise KeyError("missing")

    async def generator_fails(out, data):
        yield 1
        raise ValueError("bad step")

    client = connect(start_server({"sync": sync_fails, "async": async_fails, "gen": generator_fails}))
    errors = []
    for action in ("sync", "async"):
        with pytest.raises(RemoteError) as info:
            client.call(action)
        errors.append((info.value.args[0], info.value.code, info.value.type))
    assert errors[0] == errors[1] == ("missing", 500, "KeyError")
    stream = client.stream("gen")
    assert next(stream) == 1
    with pytest.raises(RemoteError, match="bad step") as info:
        next(stream)
    assert (info.value.code, info.value.type) == (500, "ValueError")


def test_an_async_value_that_is_not_json_is_a_clear_error(start_server, connect):
    async def returns_set(out, data):
        return {1, 2}

    client = connect(start_server({"set": returns_set}))
    with pytest.raises(RemoteError, match="not JSON serialisable.*json_default"):
        client.call("set")


def test_sys_exit_in_an_async_handler_ends_the_program(start_server, connect):
    async def leave(out, data):
        await asyncio.sleep(0)
        raise SystemExit(3)

    server = start_server({"leave": leave})
    connect(server).stream("leave")
    assert server.wait(10) == 3
    assert not server.running


# -- the loop's life ---------------------------------------------------------------


def test_shutdown_stops_the_loop_even_if_a_handler_ignores_its_cancel(connect):
    started = threading.Event()

    async def stubborn(out, data):
        started.set()
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass  # ignores the first cancel; the shutdown's drain cancels again and waits

    server = IgorServer(api={"stubborn": stubborn}, config={"port": 0, "shutdown_timeout": 0.2})
    server.run_forever(threaded=True)
    try:
        connect(server).stream("stubborn")
        assert started.wait(5)
        assert len(loop_threads()) == 1
    finally:
        server.shutdown()
    assert not server.running
    wait_for(lambda: not loop_threads(), message="the event loop thread to end")


def test_shutdown_from_an_async_handler_does_not_deadlock(start_server, connect):
    answers = queue.Queue()

    async def stop(out, data, server):
        answers.put(server.shutdown())

    server = start_server({"stop": stop})
    connect(server).stream("stop")
    assert answers.get(timeout=5) is False  # still under way: it waits for this very handler's loop
    assert server.wait(10) == 0
    wait_for(lambda: not loop_threads(), message="the event loop thread to end")


def test_a_server_with_only_sync_handlers_starts_no_loop(start_server, connect):
    client = connect(start_server({"hi": lambda out, data: "hi"}))
    assert client.call("hi") == "hi"
    assert not loop_threads()


def test_sends_blocked_on_a_client_that_does_not_read_do_not_stall_other_async_handlers(start_server, connect):
    # asyncio's own default executor has cpus + 4 threads; more blocked sends than that would
    # leave none for other async handlers' sends until send_timeout passed.
    blocked = 12

    async def flood(out, data):
        chunk = "x" * 65536
        while True:
            await out.asend(chunk)

    async def echo(out, data):
        await out.asend(data)

    server = start_server({"flood": flood, "echo": echo},
                          config={"send_queue_bytes": 65536, "send_timeout": 60})
    sink = websocket.create_connection(server.url)  # never reads
    for stream_id in range(blocked):
        sink.send(json.dumps({"streamId": stream_id, "action": "flood"}))

    wait_for(lambda: busy_workers(server) >= blocked, timeout=10, message="every flood to block in a send")
    assert connect(server).call("echo", "still served", timeout=5) == "still served"
    sink.close()


def test_sends_to_a_client_that_keeps_up_need_no_thread(start_server, connect):
    async def many(out, data):
        for i in range(data):
            await out.asend(i)
        yield "done"

    server = start_server({"many": many})
    client = connect(server)
    assert list(client.stream("many", 200)) == list(range(200)) + ["done"]
    assert server.dispatcher._loop.offloaded == 0


def test_sends_that_must_wait_for_room_keep_their_order(start_server):
    count, size = 300, 32768
    progress = []

    async def big(out, data):
        for i in range(count):
            progress.append(i)
            yield [i, "x" * size]

    server = start_server({"big": big}, config={"send_queue_bytes": 65536, "send_timeout": 30})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "big"}))
    # Not reading yet: the socket's buffers fill, and a send goes to a thread to wait for room.
    wait_for(lambda: busy_workers(server), timeout=10, message="a send to wait for room")
    assert len(progress) < count
    messages = recv_until_close(ws, 1, limit=count + 1)
    assert [m["data"][0] for m in messages[:-1]] == list(range(count))
    ws.close()


@pytest.mark.parametrize("offered, joined", [(["igor.v2"], True), (None, False)])
def test_an_async_return_value_carries_the_close_under_protocol_2(start_server, offered, joined):
    async def answer(out, data):
        await asyncio.sleep(0)
        return data

    async def closes_first(out, data):
        await out.aclose()
        return "dropped, as a sync handler's would be"

    server = start_server({"answer": answer, "closes_first": closes_first})
    ws = websocket.create_connection(server.url, subprotocols=offered)
    ws.send(json.dumps({"streamId": 1, "action": "answer", "data": {"k": 1}}))
    expected = ([{"streamId": 1, "data": {"k": 1}, "close": True}] if joined
                else [{"streamId": 1, "data": {"k": 1}}, {"streamId": 1, "data": None, "close": True}])
    assert recv_until_close(ws, 1) == expected
    ws.send(json.dumps({"streamId": 2, "action": "closes_first"}))
    close = {"streamId": 2, "close": True} if joined else {"streamId": 2, "data": None, "close": True}
    assert recv_until_close(ws, 2) == [close]
    ws.close()


def test_an_async_return_value_that_must_wait_for_room_still_ends_the_stream(start_server):
    count, size = 300, 32768  # more than loopback's socket buffers hold

    async def fill_then_answer(out, data):
        for i in range(count):
            await out.asend([i, "x" * size])
        return "last"

    server = start_server({"h": fill_then_answer}, config={"send_queue_bytes": 65536, "send_timeout": 30})
    ws = websocket.create_connection(server.url, subprotocols=["igor.v2"])
    ws.send(json.dumps({"streamId": 1, "action": "h"}))
    # Not reading yet: the backlog fills, so the sends (and then the return value) wait on a thread.
    wait_for(lambda: busy_workers(server), timeout=10, message="a send to wait for room")
    messages = recv_until_close(ws, 1, limit=count + 1)
    assert [m["data"][0] for m in messages[:-1]] == list(range(count))
    assert messages[-1] == {"streamId": 1, "data": "last", "close": True}
    ws.close()
