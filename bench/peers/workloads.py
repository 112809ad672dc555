"""The workloads: those run in the harness process, and those spread over a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import selectors
import statistics
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from .client import FrameReader, connect
from .common import MiB
from .servers import ServerProcess

# -- workloads run in the harness process --------------------------------------------------------------

def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def serial_calls(peer: str, port: int, count: int, limit: float,
                 until: Optional[float] = None, warm_up: int = 20) -> Dict[str, float]:
    """Small echo calls one after another on one connection: rate and latency percentiles."""
    client = connect(peer, port)
    try:
        for k in range(warm_up):
            client.call("echo", {"k": k})
        times = []
        stop_at = until if until is not None else time.monotonic() + limit
        began = time.perf_counter()
        for k in range(count):
            if time.monotonic() >= stop_at:
                break
            data = {"k": k}
            t0 = time.perf_counter()
            value = client.call("echo", data)
            times.append(time.perf_counter() - t0)
            if value != data:
                raise AssertionError(f"{peer}: echo answered {value!r} to {data!r}")
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    if not times:
        raise AssertionError(f"{peer}: no call completed in the time given")
    return {"calls_per_s": len(times) / elapsed, "p50_ms": percentile(times, 0.5) * 1e3,
            "p99_ms": percentile(times, 0.99) * 1e3, "calls": len(times)}


def big_round_trips(peer: str, port: int, size: int, reps: int, limit: float) -> Dict[str, float]:
    """Median seconds to echo an ASCII string of ``size`` bytes; at least one, at most ``reps``, within ``limit``."""
    text = ("0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]
    client = connect(peer, port, timeout=120)
    try:
        client.round_trip("warm-up")
        times: List[float] = []
        began = time.monotonic()
        while len(times) < reps and (not times or time.monotonic() - began < limit):
            times.append(client.round_trip(text))
    finally:
        client.close()
    return {"median_ms": statistics.median(times) * 1e3, "reps": len(times)}


def push(peer: str, port: int, count: int, limit: float) -> Dict[str, float]:
    """``count`` small messages pushed to one client after one request: messages/s, all checked in order."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        reader = FrameReader(client)
        client.next_id += 1
        request = client.request("push", {"count": count}, client.next_id)
        began = time.perf_counter()
        client.ws.send(request)
        deadline = time.monotonic() + limit
        while len(reader.items) < count and time.monotonic() < deadline:
            reader.feed()
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    values = [client.pushed_value(p) for p in reader.items]
    if values != [{"k": k} for k in range(count)]:
        raise AssertionError(f"{peer}: {len(values)} of {count} pushed messages arrived, or out of order")
    return {"msgs_per_s": count / elapsed, "count": count}


def broadcast(server: ServerProcess, clients: int, count: int, limit: float) -> Dict[str, Any]:
    """The server's background thread/process sends ``count`` messages to all ``clients``: deliveries/s."""
    conns = [connect(server.peer, server.port) for _ in range(clients)]
    try:
        for c in conns:  # one call each: every connection is registered with the server before it starts
            c.call("echo", {"k": 0})
        readers = [FrameReader(c) for c in conns]
        selector = selectors.DefaultSelector()
        for r in readers:
            selector.register(r.sock, selectors.EVENT_READ, r)
        pending = len(readers)
        began = time.perf_counter()
        server.command(f"broadcast {count}")
        deadline = time.monotonic() + limit
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                r = key.data
                r.feed()
                if len(r.items) >= count:
                    r.done_at = time.perf_counter()
                    selector.unregister(r.sock)
                    pending -= 1
        selector.close()
    finally:
        for c in conns:
            c.close()
    received = sum(len(r.items) for r in readers)
    if pending:
        raise AssertionError(f"{server.peer}: {received} of {clients * count} deliveries within {limit} s")
    expected = [{"k": k} for k in range(count)]
    in_order = all([r.client.pushed_value(p) for p in r.items] == expected for r in readers)
    if not in_order:
        raise AssertionError(f"{server.peer}: a client received the broadcast out of order or altered")
    elapsed = max(r.done_at for r in readers) - began
    return {"deliveries_per_s": received / elapsed, "clients": clients, "count": count, "in_order": True}


# -- workloads run in the worker processes ---------------------------------------------------------

_PROGRESS: Any = None  # a multiprocessing queue: workers of the connections workload report here
_RELEASE: Any = None  # a multiprocessing event: set when the connections may close


def _init_worker(progress, release) -> None:
    global _PROGRESS, _RELEASE
    _PROGRESS, _RELEASE = progress, release


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def parallel_worker(peer: str, port: int, start_at: float, stop_at: float, max_calls: int) -> Tuple[int, float]:
    """Small calls in a loop from ``start_at`` until ``stop_at`` (or ``max_calls``); (calls, end time)."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        _sleep_until(start_at)
        done = 0
        while done < max_calls and time.monotonic() < stop_at:
            data = {"k": done}
            if client.call("echo", data) != data:
                raise AssertionError(f"{peer}: wrong echo")
            done += 1
        return done, time.monotonic()
    finally:
        client.close()


def loader_worker(peer: str, port: int, start_at: float, stop_at: float) -> Tuple[int, int]:
    """Pulls the ~256 KiB blob again and again until ``stop_at``; (pulls, bytes)."""
    client = connect(peer, port)
    try:
        client.call("echo", {"k": 0})
        _sleep_until(start_at)
        pulls = size = 0
        while time.monotonic() < stop_at:
            reply = client.call("blob", None, decode=False)  # checked by size; parsing would only load the client
            if len(reply) < 200_000:
                raise AssertionError(f"{peer}: the blob came back short ({len(reply)} characters)")
            pulls, size = pulls + 1, size + len(reply)
        return pulls, size
    finally:
        client.close()


def connections_worker(peer: str, port: int, worker: int, count: int, start_at: float,
                       timeout: float) -> Dict[str, int]:
    """``count`` threads each open a connection at ``start_at`` and make one call, then hold it open.

    Reports on _PROGRESS once every thread has succeeded or failed, and closes
    all connections once _RELEASE is set.
    """
    threading.stack_size(256 * 1024)
    outcomes: Counter = Counter()
    lock = threading.Lock()
    all_tried = threading.Event()

    def one(k: int) -> None:
        client = None
        try:
            client = connect(peer, port, timeout)
            data = {"k": k}
            outcome = "ok" if client.call("echo", data) == data else "wrong reply"
        except Exception as exc:  # noqa: BLE001 -- each failure is counted by kind
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1
            if sum(outcomes.values()) == count:
                all_tried.set()
        _RELEASE.wait(timeout + 30)
        if client is not None:
            client.drop()

    _sleep_until(start_at)
    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    all_tried.wait(timeout + 10)
    with lock:
        _PROGRESS.put((worker, dict(outcomes)))
    for t in threads:
        t.join(timeout + 40)
    return dict(outcomes)


def settled(server: ServerProcess, quiet: float = 2.5, limit: float = 8.0) -> Dict[str, int]:
    """The server's status once its thread count has held still for ``quiet`` seconds (at most ``limit``).

    Threads that end after a handshake, or a pool's idle workers (Igor's end
    2 s after their last call), are not the connections' own.
    """
    began = time.monotonic()
    status = server.status()
    still_since = began
    while time.monotonic() - began < limit:
        time.sleep(0.1)
        now = server.status()
        if now["Threads"] != status["Threads"]:
            still_since = time.monotonic()
        status = now
        if time.monotonic() - still_since >= quiet:
            break
    return status


def listen_counters() -> Dict[str, int]:
    """The kernel's TcpExt ListenOverflows and ListenDrops (this network namespace, all sockets)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {"overflows": counters["ListenOverflows"], "drops": counters["ListenDrops"]}
    raise RuntimeError("no TcpExt line in /proc/net/netstat")


class Workers:
    """A pool of client processes (spawned once, reused by every run) and its coordination channels."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("spawn")
        self.progress = context.Queue()
        self.release = context.Event()
        self.pool = context.Pool(processes, initializer=_init_worker, initargs=(self.progress, self.release))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def parallel(workers: Workers, peer: str, port: int, clients: int, seconds: float,
             max_calls: int) -> Dict[str, float]:
    start_at = time.monotonic() + 0.7  # time for every worker to connect first
    jobs = [workers.pool.apply_async(parallel_worker, (peer, port, start_at, start_at + seconds, max_calls))
            for _ in range(clients)]
    results = [job.get(seconds + 60) for job in jobs]
    calls = sum(n for n, _ in results)
    return {"calls_per_s": calls / (max(end for _, end in results) - start_at), "calls": calls}


def under_load(workers: Workers, peer: str, port: int, loaders: int, seconds: float,
               count: int) -> Dict[str, float]:
    """Serial small calls from this process while ``loaders`` worker processes pull the blob."""
    start_at = time.monotonic() + 0.7
    stop_at = start_at + seconds
    jobs = [workers.pool.apply_async(loader_worker, (peer, port, start_at, stop_at)) for _ in range(loaders)]
    _sleep_until(start_at + 0.3)  # the loaders are under way
    measured = serial_calls(peer, port, count, 0, until=stop_at, warm_up=1)
    results = [job.get(seconds + 120) for job in jobs]
    return {"p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"], "calls": measured["calls"],
            "loader_mib_per_s": sum(size for _, size in results) / MiB / seconds}


def connections(workers: Workers, server: ServerProcess, total: int, processes: int,
                timeout: float) -> Dict[str, Any]:
    """``total`` connections at once, each making one call and then held open while the server is sampled."""
    idle = server.status()
    before = listen_counters()
    workers.release.clear()
    start_at = time.monotonic() + 1.0
    share = [total // processes + (1 if w < total % processes else 0) for w in range(processes)]
    jobs = [workers.pool.apply_async(connections_worker, (server.peer, server.port, w, n, start_at, timeout))
            for w, n in enumerate(share)]
    for _ in range(processes):
        workers.progress.get(timeout=timeout + 60)
    served_in = time.monotonic() - start_at
    held = settled(server)

    after = listen_counters()
    workers.release.set()
    outcomes: Counter = Counter()
    for job in jobs:
        outcomes.update(job.get(timeout + 60))
    workers.release.clear()
    ok = outcomes.pop("ok", 0)
    return {
        "ok": ok, "failed": sum(outcomes.values()), "errors": dict(outcomes), "total": total,
        "listen_overflows": after["overflows"] - before["overflows"], "listen_drops": after["drops"] - before["drops"],
        "rss_idle_mib": idle["VmRSS"] / 1024, "rss_open_mib": held["VmRSS"] / 1024,
        "threads_idle": idle["Threads"], "threads_open": held["Threads"],
        "threads_per_conn": (held["Threads"] - idle["Threads"]) / max(ok, 1), "seconds": served_in,
    }
