"""An adversary that knows none of the listed attacks: random sequences of everything a client can send.

A seeded hypothesis state machine drives a real server in its own process
(attack_server.py) through calls of handlers that block and ignore cancels,
read slowly, block the event loop or use ``to_thread``; cancels, input, ends
of input, process input, introductions with guessed secrets, disconnects and
reconnects, malformed and oversized frames, and odd JSON shapes. After every
step it checks what docs/protocol.md says holds after any sequence:

- the server's threads stay within ``max_workers`` plus a fixed few;
- its peak RSS grows less than the documented per-client figure times the
  connections it has had at once, plus a margin for the interpreter;
- a second, well-behaved client's echo is answered within a second;
- the log holds no traceback, and the server process is alive.

CI runs a bounded number of examples; ``pytest -m long test/test_adversary.py`` runs a longer one.
"""

import json
import os
import socket
import struct
import time

import pytest
import wsraw
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_attacks import MiB, ServerProcess, text
from test_bounds import Drain, hang_up

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/<pid>/status")

CONFIG = {"max_workers": 48, "max_streams": 12, "max_client_memory": 4 * MiB, "max_message_size": MiB,
          "send_queue_bytes": MiB, "send_timeout": 2, "max_clients": 8, "session_timeout": 2}
#: What one client can make the server hold (docs/protocol.md): its budget, its outbox, a message being read.
PER_CLIENT = CONFIG["max_client_memory"] + CONFIG["send_queue_bytes"] + 3 * CONFIG["max_message_size"]
MARGIN = 48 * MiB  # threads' stacks, the interpreter's arenas, a loaded machine
FIXED_FEW = 16
MAX_ADVERSARIES = 3

ACTIONS = ["sleepy", "sleepy_async", "blocks_loop", "never_reads", "reads_slowly", "echo", "block", "no_such"]
stream_ids = st.one_of(st.integers(0, 6), st.sampled_from(["a", "b"]))
# Big shapes are named, not drawn, so that a failing example prints short.
SHAPES = {"2000 dicts": [{}] * 2000, "nested": [[[[[[[[]]]]]]]], "dict of dicts": {"k": [{}] * 500},
          "long string": "x" * 200_000}
odd_json = st.one_of(
    st.none(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(sorted(SHAPES)).map(lambda name: ("shape", name)),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                 max_leaves=20),
)
RAW = {
    "too deep": b"[" * 100_000,
    "NaN": b'{"streamId": 1, "action": "echo", "data": NaN}',
    "long name": json.dumps({"streamId": 1, "action": "x" * 5000}).encode(),
    "costly": ("[" + ",".join(["{}"] * 300_000) + "]").encode(),  # 900 KB that would parse to 20 MB
    "costly call": ('{"streamId": 1, "action": "block", "data": [' + ",".join(["{}"] * 300_000) + "]}").encode(),
}
raw_texts = st.one_of(st.binary(max_size=64), st.sampled_from(sorted(RAW)))  # not UTF-8 or not JSON, or named


BINARY_KINDS = {"call", "input", "process", "reply", "bad length", "bad path", "bad sizes", "not json", "big"}


def binary_payload(kind, stream_id, action, size):
    """A binary message of ``kind``: a head (4-byte length, JSON) and ``size`` bytes."""
    entry = [{"at": ["data"], "size": size}]
    heads = {
        "call": {"streamId": stream_id, "action": action, "data": [None, 1],
                 "binary": [{"at": ["data", 0], "size": size}]},
        "input": {"streamId": stream_id, "data": None, "binary": entry},
        "process": {"process": "reader", "data": None, "binary": entry},
        "reply": {"callId": 1, "data": None, "binary": entry},
        "bad path": {"streamId": stream_id, "data": None, "binary": [{"at": ["data", "x"], "size": size}]},
        "bad sizes": {"streamId": stream_id, "data": None, "binary": [{"at": ["data"], "size": size + 1}]},
        "big": {"streamId": stream_id, "data": None, "binary": [{"at": ["data"], "size": 2 * MiB}]},
    }
    if kind == "bad length":
        return b"\xff\xff\xff\xff{}" + bytes(size)
    head = b"{nope" if kind == "not json" else json.dumps(heads[kind]).encode()
    body = bytes(2 * MiB if kind == "big" else size)  # over max_message_size: 1009
    return struct.pack("!I", len(head)) + head + body


def value(data):
    """A drawn value, its named shapes made."""
    return SHAPES[data[1]] if isinstance(data, tuple) else data


class Adversary(RuleBasedStateMachine):
    server: ServerProcess = None  # one for all examples: what one example leaves must not hurt the next

    def __init__(self):
        super().__init__()
        if Adversary.server is None or Adversary.server.proc.poll() is not None:
            Adversary.server = ServerProcess(CONFIG)
        self.server = Adversary.server
        self.rss_before = self.server.rss()
        self.hwm_before = self.server.status()["VmHWM"]
        self.conns = []
        self.most_at_once = 1
        self.good = wsraw.connect(self.server.port, timeout=5)
        self.good_id = 0

    # -- connections ---------------------------------------------------------------

    # The rules' preconditions read only the machine's own list (hypothesis replays them): a connection
    # the server closed, or one it refused, stays in it, and sends to it go nowhere.

    @precondition(lambda self: len(self.conns) < MAX_ADVERSARIES)
    @rule(v3=st.booleans())
    def connect(self, v3):
        try:
            # Protocol 3 takes binary messages (and greets with a hello); before it they close the connection.
            sock = wsraw.connect(self.server.port, {"Sec-WebSocket-Protocol": "igor.v3"} if v3 else None, timeout=5)
            self.conns.append((sock, Drain(sock)))
        except (AssertionError, OSError):
            self.conns.append((None, None))  # max_clients reached with connections not yet dropped: an answer
        self.most_at_once = max(self.most_at_once, len(self.conns) + 1)

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, MAX_ADVERSARIES))
    def disconnect(self, index):
        sock, drain = self.conns.pop(index % len(self.conns))
        if sock is not None:
            hang_up(sock)
            drain.join(5)

    def send(self, index, payload):
        sock, _ = self.conns[index % len(self.conns)]
        if sock is None:
            return
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may have closed it (an oversized frame, a slow consumer): that is its right

    # -- messages --------------------------------------------------------------------

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), stream_id=stream_ids, action=st.sampled_from(ACTIONS), data=odd_json,
          seconds=st.floats(0.05, 1.5))
    def call(self, index, stream_id, action, data, seconds):
        if action in ("sleepy", "sleepy_async"):
            data = seconds
        elif action == "blocks_loop":
            data = min(seconds, 0.3)  # a blocked loop holds every async handler: kept short, as its warning says
        self.send(index, text({"streamId": stream_id, "action": action, "data": value(data)}))

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), action=st.sampled_from(["sleepy", "sleepy_async", "block", "never_reads"]),
          count=st.integers(1, 80), cancel=st.booleans(), first=st.integers(100, 1000))
    def burst(self, index, action, count, cancel, first):
        """The typeahead pattern: many calls at once, each cancelled at once or left to run."""
        payload = b""
        for stream_id in range(first, first + count):
            payload += text({"streamId": stream_id, "action": action, "data": 1.0})
            if cancel:
                payload += text({"streamId": stream_id, "cancel": True})
        self.send(index, payload)

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), stream_id=stream_ids)
    def cancel(self, index, stream_id):
        self.send(index, text({"streamId": stream_id, "cancel": True}))

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), stream_id=stream_ids, data=odd_json, repeat=st.integers(1, 150))
    def input(self, index, stream_id, data, repeat):
        self.send(index, text({"streamId": stream_id, "data": value(data)}) * repeat)

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), stream_id=stream_ids)
    def end(self, index, stream_id):
        self.send(index, text({"streamId": stream_id, "end": True}))

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), process=st.sampled_from(["sink", "reader", "nope"]), data=odd_json,
          repeat=st.integers(1, 150))
    def process_input(self, index, process, data, repeat):
        self.send(index, text({"process": process, "data": value(data)}) * repeat)

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), client_id=st.one_of(st.integers(1, 4), st.sampled_from(["w", "x"])),
          resume=st.one_of(st.none(), st.text(max_size=30)))
    def introduce(self, index, client_id, resume):
        data = {"client_id": client_id} if resume is None else {"client_id": client_id, "resume": resume}
        self.send(index, text({"streamId": "i", "action": "introduce_self", "data": data}))

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), payload=raw_texts)
    def malformed_text(self, index, payload):
        self.send(index, wsraw.frame_bytes(0x1, RAW[payload] if isinstance(payload, str) else payload))

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), kind=st.sampled_from(["binary", "oversized", "unmasked", "reserved", "fragment"]))
    def bad_frame(self, index, kind):
        if kind == "binary":
            frame = wsraw.frame_bytes(0x2, b"\x00" * 100)
        elif kind == "oversized":
            frame = b"\x81\xff" + struct.pack("!Q", 1 << 40) + b"\x00\x00\x00\x00"  # 1 TiB declared
        elif kind == "unmasked":
            frame = wsraw.frame_bytes(0x1, b"{}", mask=False)
        elif kind == "reserved":
            frame = wsraw.frame_bytes(0x1, b"{}", rsv=0x4)
        else:
            frame = wsraw.frame_bytes(0x1, b'{"streamId": 1', fin=False) * 3  # a new message inside a message
        self.send(index, frame)

    @precondition(lambda self: self.conns)
    @rule(index=st.integers(0, 9), stream_id=stream_ids, kind=st.sampled_from(sorted(BINARY_KINDS)),
          action=st.sampled_from(ACTIONS), size=st.integers(0, 300_000), repeat=st.integers(1, 8))
    def binary_message(self, index, stream_id, kind, action, size, repeat):
        """Protocol 3's binary messages, well formed (every kind of message) and not."""
        payload = binary_payload(kind, stream_id, action, size)
        # A zero mask key leaves the payload as it is: wsraw's byte-by-byte masking is too slow for megabytes.
        frame = wsraw.frame_bytes(0x2, b"", length=len(payload), key=b"\x00" * 4) + payload
        self.send(index, frame * (1 if kind == "big" else repeat))

    # -- what holds after every step ----------------------------------------------------

    @invariant()
    def threads_within_max_workers(self):
        threads = self.server.threads()
        assert threads <= CONFIG["max_workers"] + FIXED_FEW + self.most_at_once, threads

    @invariant()
    def memory_within_the_documented_figure(self):
        growth = self.server.status()["VmHWM"] - self.hwm_before
        assert growth < self.most_at_once * PER_CLIENT + MARGIN, f"{growth / MiB:.1f} MiB"

    @invariant()
    def a_second_client_is_answered_within_a_second(self):
        self.good_id += 1
        self.good.sendall(text({"streamId": self.good_id, "action": "echo", "data": self.good_id}))
        self.good.settimeout(1.0)
        started = time.monotonic()
        while True:
            try:
                _, opcode, payload = wsraw.recv_frame(self.good)
            except socket.timeout:
                raise AssertionError(f"no echo within 1 s ({time.monotonic() - started:.2f}s)") from None
            message = json.loads(payload)
            if message.get("streamId") == self.good_id and "data" in message and not message.get("close"):
                assert message["data"] == self.good_id
                return

    @invariant()
    def no_traceback_and_alive(self):
        assert self.server.proc.poll() is None, self.server.stderr()[-3000:]
        log = self.server.stderr()
        assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]

    def teardown(self):
        for sock, drain in self.conns:
            if sock is not None:
                hang_up(sock)
                drain.join(5)
        hang_up(self.good)


def run(examples, steps):
    Adversary.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck))
    try:
        Adversary.TestCase().runTest()
    finally:
        if Adversary.server is not None:
            Adversary.server.stop()
            Adversary.server = None


def test_adversary_keeps_every_bound():
    run(examples=30, steps=40)


@pytest.mark.slow
@pytest.mark.long
def test_adversary_keeps_every_bound_for_longer():
    run(examples=150, steps=40)
