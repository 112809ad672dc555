"""Binary rows: Igor's protocol 3 against the websockets package's binary messages, with the same client library.

Three rows, each peer's server in its own process (``python -m bench.peers --serve PEER``):

- ``echo 10 MiB``: median round trip of 10 MiB of bytes through an echo (Igor: a binary message whose
  head names the call, answered by the handler's return value; websockets: the bytes echoed);
- ``push 256 MiB``: 256 messages of 1 MiB sent by the server after one request (Igor: ``out.send_chunks``
  read by ``IgorClient.download``; websockets: ``await ws.send`` in a loop), MiB/s, and the server's
  peak RSS growth;
- ``upload 256 MiB``: 256 chunks of 1 MiB into a handler that reads them (Igor: ``IgorClient.upload``,
  paced by ``read``; websockets: sent back to back, then the count read back), MiB/s and RSS growth.

Every send goes through websocket-client with the same frame masking (``igor.client_socket.binary_frame``,
numpy's XOR): the client's masking is then the same cost for both, not the difference measured.

``python -m bench.peers.binary [--runs 3] [--out bench/results]``: prints a Markdown table and the
ratios, writes binary.md and binary.json to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from typing import Callable, Dict, List

import websocket

from .common import ROOT, MiB, log
from .servers import ServerProcess

sys.path.insert(0, ROOT)

from igor.binary import unpack  # noqa: E402
from igor.client import IgorClient  # noqa: E402
from igor.client_socket import binary_frame  # noqa: E402

ECHO = 10 * MiB
CHUNKS = 256


def _memory(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _growth(pid: int, run: Callable[[], None]) -> int:
    """Peak RSS growth of process ``pid`` during ``run()`` (VmHWM, reset first with clear_refs)."""
    before = _memory(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
    run()
    return _memory(pid, "VmHWM") - before


def _igor_echo_request(stream_id: int, payload: bytes) -> bytes:
    head = json.dumps({"streamId": stream_id, "action": "echo", "data": None,
                       "binary": [{"at": ["data"], "size": len(payload)}]}, separators=(",", ":")).encode()
    return struct.pack("!I", len(head)) + head + payload


def echo_igor(port: int, reps: int) -> List[float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", subprotocols=["igor.v3"], timeout=60)
    ws.recv()  # the hello
    payload = os.urandom(ECHO)
    times = []
    for k in range(reps + 1):
        request = _igor_echo_request(k + 1, payload)
        began = time.perf_counter()
        ws.send_frame(binary_frame(request))
        opcode, reply = ws.recv_data()
        elapsed = time.perf_counter() - began
        if opcode != websocket.ABNF.OPCODE_BINARY or unpack(reply)["data"] != payload:
            raise AssertionError("igor: the echo came back altered")
        if k:
            times.append(elapsed)  # the first is a warm-up
    ws.close()
    return times


def echo_websockets(port: int, reps: int) -> List[float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=60)
    payload = os.urandom(ECHO)
    times = []
    for k in range(reps + 1):
        began = time.perf_counter()
        ws.send_frame(binary_frame(payload))
        opcode, reply = ws.recv_data()
        elapsed = time.perf_counter() - began
        if reply != payload:
            raise AssertionError("websockets: the echo came back altered")
        if k:
            times.append(elapsed)
    ws.close()
    return times


class _Sink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)


def push_igor(server: ServerProcess) -> Dict[str, float]:
    with IgorClient(f"ws://127.0.0.1:{server.port}/", timeout=120) as client:
        client.download("bpush", 4, to=_Sink())
        sink, took = _Sink(), []

        def run() -> None:
            began = time.perf_counter()
            client.download("bpush", CHUNKS, to=sink)
            took.append(time.perf_counter() - began)

        grown = _growth(server.pid, run)
    assert sink.size == CHUNKS * MiB, sink.size
    return {"mib_per_s": CHUNKS / took[0], "rss_growth_mib": grown / MiB}


def push_websockets(server: ServerProcess) -> Dict[str, float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=120)
    took = []

    def run() -> None:
        began = time.perf_counter()
        ws.send(f"!bpush {CHUNKS}")
        size = 0
        for _ in range(CHUNKS):
            size += len(ws.recv_data()[1])
        took.append(time.perf_counter() - began)
        assert size == CHUNKS * MiB, size

    ws.send("!bpush 4")
    for _ in range(4):
        ws.recv_data()
    grown = _growth(server.pid, run)
    ws.close()
    return {"mib_per_s": CHUNKS / took[0], "rss_growth_mib": grown / MiB}


def upload_igor(server: ServerProcess) -> Dict[str, float]:
    with IgorClient(f"ws://127.0.0.1:{server.port}/", timeout=120) as client:
        client.upload("bsink", bytes(4 * MiB))
        took, answers = [], []

        def run() -> None:
            began = time.perf_counter()
            answers.append(client.upload("bsink", (bytes(MiB) for _ in range(CHUNKS)), chunk_size=MiB))
            took.append(time.perf_counter() - began)

        grown = _growth(server.pid, run)
    assert answers == [CHUNKS * MiB], answers
    return {"mib_per_s": CHUNKS / took[0], "rss_growth_mib": grown / MiB}


def upload_websockets(server: ServerProcess) -> Dict[str, float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=120)
    took, answers = [], []

    def run() -> None:
        began = time.perf_counter()
        ws.send(f"!bsink {CHUNKS}")
        for _ in range(CHUNKS):
            ws.send_frame(binary_frame(bytes(MiB)))
        answers.append(int(ws.recv()))
        took.append(time.perf_counter() - began)

    ws.send("!bsink 1")
    ws.send_frame(binary_frame(bytes(MiB)))
    ws.recv()
    grown = _growth(server.pid, run)
    ws.close()
    assert answers == [CHUNKS * MiB], answers
    return {"mib_per_s": CHUNKS / took[0], "rss_growth_mib": grown / MiB}


def run_once(log_dir: str, reps: int) -> Dict[str, Dict[str, Dict[str, float]]]:
    results: Dict[str, Dict[str, Dict[str, float]]] = {"echo": {}, "push": {}, "upload": {}}
    for peer in ("websockets", "igor"):
        server = ServerProcess(peer, log_dir)
        try:
            echo = (echo_igor if peer == "igor" else echo_websockets)(server.port, reps)
            results["echo"][peer] = {"median_ms": statistics.median(echo) * 1e3}
            results["push"][peer] = (push_igor if peer == "igor" else push_websockets)(server)
            results["upload"][peer] = (upload_igor if peer == "igor" else upload_websockets)(server)
        finally:
            server.stop()
        log(f"  {peer}: {json.dumps({row: results[row][peer] for row in results})}")
    return results


def table(runs: List[Dict[str, Dict[str, Dict[str, float]]]]) -> str:
    def median(row: str, peer: str, key: str) -> float:
        return statistics.median(run[row][peer][key] for run in runs)

    lines = ["| row | websockets | Igor | Igor / websockets |", "| --- | --- | --- | --- |"]
    ws_ms, igor_ms = median("echo", "websockets", "median_ms"), median("echo", "igor", "median_ms")
    lines.append(f"| echo 10 MiB of bytes, round trip (median ms; lower is better) | {ws_ms:.1f} | {igor_ms:.1f} "
                 f"| {igor_ms / ws_ms:.2f}x the time |")
    for row, title in (("push", "256 MiB pushed in 1 MiB chunks"), ("upload", "256 MiB uploaded in 1 MiB chunks")):
        ws_rate, igor_rate = median(row, "websockets", "mib_per_s"), median(row, "igor", "mib_per_s")
        ws_rss, igor_rss = median(row, "websockets", "rss_growth_mib"), median(row, "igor", "rss_growth_mib")
        lines.append(f"| {title} (MiB/s; server RSS growth) | {ws_rate:.0f} ({ws_rss:.0f} MiB) | {igor_rate:.0f} "
                     f"({igor_rss:.0f} MiB) | {igor_rate / ws_rate:.2f}x the throughput |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.binary", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many times to run every row (default 3)")
    parser.add_argument("--reps", type=int, default=9, help="10 MiB round trips per run (default 9)")
    parser.add_argument("--out", help="folder to write binary.md and binary.json to")
    args = parser.parse_args()
    log_dir = os.path.join(tempfile.gettempdir(), "igor-bench-logs")
    os.makedirs(log_dir, exist_ok=True)
    runs = []
    for run in range(args.runs):
        log(f"run {run + 1} of {args.runs}")
        runs.append(run_once(log_dir, args.reps))
    text = table(runs)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "binary.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "binary.json"), "w") as f:
            json.dump({"runs": runs, "date": time.strftime("%Y-%m-%d")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
