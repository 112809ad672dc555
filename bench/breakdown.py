"""Where Igor's server-side time goes, with timing hooks, driven by the raw-socket client of roundtrip.py.

Two timelines, both on 127.0.0.1 in this process:

- one 10 MiB text message, through Igor's transport alone (raw echo) and
  through a real ``echo`` call: reading it off the socket, unmasking, UTF-8
  decoding, dispatch (JSON parse, worker hand-off), encoding the reply,
  building the frame, the writer thread's join + ``sendall``, and the client
  reading the reply;
- small calls (one frame out, data + close back): each call's events sorted
  into steps, median over the calls.

The hooks wrap Igor's functions from the outside (module globals and
subclasses made here; nothing in ``igor/`` is changed) and cost about a
microsecond each, which shows in the small-call numbers.

Run: ``python bench/breakdown.py`` (about 5 s).
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from typing import Dict, List, Tuple

import igor.core
import igor.server
import igor.transport
from igor import IgorServer
from igor.transport import IgorHandler

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from roundtrip import BIG, RawClient, RawEchoServer, big_text, masked_frame, small_texts  # noqa: E402

now = time.perf_counter
EVENTS: List[Tuple[str, float]] = []  # (event, time); list.append is atomic under the GIL


def mark(event: str) -> None:
    EVENTS.append((event, now()))


def timed(event: str, function):
    """``function`` wrapped to mark ``event:start`` and ``event:end`` around each call."""
    def wrapper(*args, **kwargs):
        EVENTS.append((event + ":start", now()))
        try:
            return function(*args, **kwargs)
        finally:
            EVENTS.append((event + ":end", now()))
    return wrapper


class _TimedSocket:
    """The writer thread's socket, marking each ``sendall``; everything else goes to the real one."""

    def __init__(self, sock):
        self._sock = sock

    def sendall(self, data):
        EVENTS.append(("sendall:start", now()))
        self._sock.sendall(data)
        EVENTS.append(("sendall:end", now()))

    def __getattr__(self, name):
        return getattr(self._sock, name)


class TimedHandler(IgorHandler):
    def _read_exact(self, size: int) -> bytes:
        data = super()._read_exact(size)
        if size > 14:
            EVENTS.append(("read payload:end", now()))
        elif not EVENTS or EVENTS[-1][0] != "read header":
            EVENTS.append(("read header", now()))  # the first header read of a frame
        return data

    def _write_loop(self) -> None:
        self.request = _TimedSocket(self.request)  # the reader has finished with self.request by now
        super()._write_loop()


def install_hooks() -> None:
    igor.transport.unmask = timed("unmask", igor.transport.unmask)
    igor.transport.build_frame = timed("build_frame", igor.transport.build_frame)
    igor.server.parse_message = timed("parse_message", igor.server.parse_message)
    igor.core.encode = timed("encode", igor.core.encode)
    IgorHandler_send = IgorHandler.send_text_message
    TimedHandler.send_text_message = timed("queue frame", IgorHandler_send)
    igor.server.IgorServer._run_call = timed("worker", igor.server.IgorServer._run_call)
    RawEchoServer._message_received = timed("dispatch", RawEchoServer._message_received)
    igor.server.IgorServer._message_received = timed("dispatch", igor.server.IgorServer._message_received)
    pool_submit = igor.server._WorkerPool.submit
    igor.server._WorkerPool.submit = timed("submit", pool_submit)


def start(server: IgorServer) -> IgorServer:
    server.run_forever(threaded=True)
    server._transport.RequestHandlerClass = TimedHandler
    return server


def echo(out, data):
    mark("handler")
    return data


def steps(events: List[Tuple[str, float]], began: float, ended: float) -> Dict[str, float]:
    """One message's timeline as named intervals, in ms."""
    first: Dict[str, float] = {}
    last: Dict[str, float] = {}
    spent: Dict[str, float] = defaultdict(float)
    opened: Dict[str, float] = {}
    for event, at in events:
        first.setdefault(event, at)
        last[event] = at
        name, _, edge = event.partition(":")
        if edge == "start":
            opened[name] = at
        elif edge == "end" and name in opened:
            spent[name] += at - opened.pop(name)
    out = {"total round trip (client clock)": ended - began}
    for name, value in spent.items():
        out[f"  in {name}"] = value
    for name, at in sorted(first.items(), key=lambda item: item[1]):
        out[f"@ {name} (first)"] = at - began
    for name in ("queue frame:end", "sendall:start", "sendall:end"):
        if name in last:
            out[f"@ {name} (last)"] = last[name] - began
    return {key: value * 1e3 for key, value in out.items()}


def window(began: float, ended: float) -> List[Tuple[str, float]]:
    return [(event, at) for event, at in EVENTS if began <= at <= ended]


def big(client: RawClient, frame: bytes, reply_size: int, frames_back: int) -> Dict[str, float]:
    reply = memoryview(bytearray(reply_size))
    EVENTS.clear()
    began = now()
    client.sock.sendall(frame)
    client.read_frame(reply)
    mark("client: reply data read")
    for _ in range(frames_back - 1):
        client.read_frame(memoryview(bytearray(256)))
    ended = now()
    time.sleep(0.05)  # the writer may mark the end of its sendall after the client has read the last byte
    return steps(window(began, now()), began, ended)


SMALL_STEPS = (
    ("1 client sendall -> reader has the header", "began", "read header"),
    ("2 reader: mask, payload, unmask, UTF-8 decode", "read header", "dispatch:start"),
    ("3 dispatch: parse_message (json.loads)", "parse_message:start", "parse_message:end"),
    ("4 dispatch: stream setup until submit", "parse_message:end", "submit:start"),
    ("5 hand-off: submit -> worker thread runs", "submit:start", "worker:start"),
    ("6 worker: handler + encode + queue data frame", "worker:start", "queue frame:end"),
    ("7 worker: encode + queue close frame", "queue frame:end", "queue frame:end#2"),
    ("8 hand-off: data frame queued -> writer sendall", "queue frame:end", "sendall:start"),
    ("9 writer: sendall (first batch)", "sendall:start", "sendall:end"),
    ("10 last frame on the wire -> client has read all", "sendall:end#last", "ended"),
)


def small(client: RawClient, count: int, frames_back: int) -> Dict[str, List[float]]:
    """Per-call intervals between hook events (ms), one list entry per call."""
    frames = [masked_frame(text) for text in small_texts(count, 5_000_000)]
    buf = memoryview(bytearray(4096))
    spans = []
    EVENTS.clear()
    for frame in frames:
        began = now()
        client.sock.sendall(frame)
        for _ in range(frames_back):
            client.read_frame(buf)
        spans.append((began, now()))
    time.sleep(0.05)
    events = sorted(EVENTS, key=lambda item: item[1])
    times = [at for _, at in events]
    result: Dict[str, List[float]] = defaultdict(list)
    batches: List[int] = []
    limits = [began for began, _ in spans[1:]] + [now()]
    for (began, ended), limit in zip(spans, limits):
        # Up to the next call's start: the writer may mark after the client has read its frames.
        mine = events[bisect.bisect_left(times, began): bisect.bisect_right(times, limit)]
        at: Dict[str, float] = {"began": began, "ended": ended}
        queued_data = None
        sends = 0
        for event, t in mine:
            if event == "queue frame:end":
                if queued_data is None:
                    queued_data = t
                    at.setdefault(event, t)
                else:
                    at.setdefault(event + "#2", t)
            elif event.startswith("sendall:"):
                if queued_data is None:
                    continue  # the previous call's writer, marking late
                if event == "sendall:start":
                    sends += 1
                at.setdefault(event, t)
                if event == "sendall:end":
                    at["sendall:end#last"] = t
            else:
                at.setdefault(event, t)
        batches.append(sends)
        result["total round trip (client clock)"].append((ended - began) * 1e3)
        for name, start, end in SMALL_STEPS:
            if start in at and end in at:
                result[name].append((at[end] - at[start]) * 1e3)
    result["sendall batches per call (mean)"] = [statistics.mean(batches)]
    return result


def median_steps(runs: List[Dict[str, float]]) -> Dict[str, float]:
    keys = {key for run in runs for key in run}
    return {key: statistics.median(run[key] for run in runs if key in run) for key in keys}


def print_steps(title: str, values: Dict[str, float]) -> None:
    print(f"\n{title}")
    for key, value in sorted(values.items(), key=lambda item: (not item[0].startswith("total"),
                                                                item[0].startswith("  "), item[1])):
        print(f"  {key:<40} {value:9.3f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=BIG)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    install_hooks()
    text = big_text(args.size)
    payload = text.encode("utf-8")

    # Pieces measured alone on the same 10 MiB (no socket, one thread).
    mask = b"\x01\x02\x03\x04"
    call_text = json.dumps({"streamId": 1, "action": "echo", "data": text}, ensure_ascii=False)
    alone = {}
    for name, run in (
        ("copy + unmask in place (igor.frames)", lambda: igor.frames.unmask(bytearray(payload), mask)),
        ("UTF-8 decode", lambda: payload.decode("utf-8")),
        ("UTF-8 encode", lambda: text.encode("utf-8")),
        ("build_frame (header + payload copy)", lambda: igor.frames.build_frame(1, payload)),
        ("b''.join([frame]) in the writer", lambda: b"".join([payload])),
        ("json.loads of the call", lambda: json.loads(call_text)),
        ("igor encode() of the reply (dumps + UTF-8)", lambda: igor.protocol.encode({"streamId": 1, "data": text})),
    ):
        samples = []
        for _ in range(5):
            began = now()
            run()
            samples.append(now() - began)
        alone[name] = statistics.median(samples) * 1e3
    print("10 MiB pieces alone, median of 5:")
    for name, ms in alone.items():
        print(f"  {name:<45} {ms:8.1f} ms")

    raw = start(RawEchoServer({}, {"port": 0}))
    server = start(IgorServer({"echo": echo}, {"port": 0}))
    try:
        raw_client, call_client = RawClient(raw.port), RawClient(server.port)
        try:
            echo_frame = masked_frame(payload)
            runs = [big(raw_client, echo_frame, len(payload), 1) for _ in range(3)]
            print_steps("10 MiB, Igor transport (raw echo), median of 3; '@' = time since the client began sending",
                        median_steps(runs))
            runs = []
            for k in range(3):
                call = json.dumps({"streamId": 100 + k, "action": "echo", "data": text}, ensure_ascii=False)
                runs.append(big(call_client, masked_frame(call.encode("utf-8")), len(payload) + 4096, 2))
            print_steps("10 MiB, Igor call (echo action), median of 3",
                        median_steps(runs))

            small(raw_client, 300, 1)  # warm-up
            small(call_client, 300, 2)
            for title, client, back in (("small messages, Igor transport (raw echo)", raw_client, 1),
                                        ("small calls, Igor call (data + close)", call_client, 2)):
                result = small(client, args.calls, back)
                print(f"\n{title}, median over {args.calls} calls (hooks on)")
                for key, values in result.items():
                    print(f"  {key:<50} {statistics.median(values):8.4f} ms  ({len(values)} calls)")
        finally:
            raw_client.close()
            call_client.close()
    finally:
        raw.shutdown()
        server.shutdown()
    threading.Event().wait(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
