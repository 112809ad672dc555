"""Igor side by side with the servers a user would otherwise pick, all in one run.

The runner: the counts, the runs (peers taking turns workload by workload), the
machine's description, and the command line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional, Tuple

from .binary import BINARY_PEERS, bytes_round_trips, download, frames, js_upload, upload
from .common import BLOB, PEERS, ROOT, MiB, log
from .report import chart, report, update_readme
from .servers import ServerProcess, serve
from .workloads import (
    Workers,
    big_round_trips,
    broadcast,
    connections,
    parallel,
    push,
    serial_calls,
    under_load,
)

FULL = {"serial": 2000, "serial_s": 4.0, "parallel_clients": 8, "parallel_s": 1.5, "parallel_max": 20000,
        "sizes": [1 * MiB, 10 * MiB], "reps": [5, 3], "big_s": 4.0,
        "push": 20000, "push_s": 20.0, "connections": 1000, "conn_processes": 4, "conn_timeout": 12.0,
        "bcast_clients": 100, "bcast": 1000, "bcast_s": 20.0, "loaders": 8, "load_s": 3.0, "load_calls": 2000,
        "bytes_size": 10 * MiB, "bytes_reps": 3, "transfer_mib": 256, "transfer_s": 60.0, "js_mib": 1024,
        "js_s": 120.0, "frames_s": 3.0}
QUICK = dict(FULL, serial=200, serial_s=1.0, parallel_s=0.5, reps=[1, 1],
             big_s=1.0, push=2000, connections=100, conn_timeout=10.0, bcast_clients=20, bcast=200, load_s=1.5,
             bytes_reps=1, transfer_mib=32, js_mib=64, frames_s=1.0)
WORKLOADS = ["serial", "parallel", "big", "push", "connections", "broadcast", "load",
             "bytes", "download", "upload", "js-upload", "frames"]


def run_once(peers: List[str], p: Dict[str, Any], workers: Workers, log_dir: str, only: List[str],
             turn: int) -> Dict[str, Dict[str, Any]]:
    """One run: each workload against every peer in turn, so the host's noise falls on all of them alike.

    The peers take turns workload by workload, not run by run, and the order rotates with ``turn``, so
    no peer always goes first. The connections workload gets a fresh server per peer; every other
    workload runs on one server per peer, all started together and idle while another peer is measured.
    """
    order = peers[turn % len(peers):] + peers[:turn % len(peers)]
    results: Dict[str, Dict[str, Any]] = {peer: {} for peer in peers}

    def attempt(peer: str, name: str, function: Callable[..., Any], *args: Any) -> None:
        began = time.monotonic()
        try:
            results[peer][name] = function(*args)
        except Exception as exc:  # noqa: BLE001 -- a peer that fails a workload is reported, the run goes on
            results[peer][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        log(f"  {peer:<16} {name:<12} {time.monotonic() - began:5.1f} s  {short(results[peer][name])}")

    if "connections" in only:
        for peer in order:
            fresh = ServerProcess(peer, log_dir)
            try:
                attempt(peer, "connections", connections, workers, fresh, p["connections"], p["conn_processes"],
                        p["conn_timeout"])
            finally:
                fresh.stop()
    servers: Dict[str, ServerProcess] = {}
    try:
        for peer in order:
            servers[peer] = ServerProcess(peer, log_dir)
        workloads: Dict[str, Callable[[str, ServerProcess], Any]] = {
            "serial": lambda peer, s: serial_calls(peer, s.port, p["serial"], p["serial_s"]),
            "parallel": lambda peer, s: parallel(workers, peer, s.port, p["parallel_clients"], p["parallel_s"],
                                                 p["parallel_max"]),
            "big": lambda peer, s: {str(size): big_round_trips(peer, s.port, size, reps, p["big_s"])
                                    for size, reps in zip(p["sizes"], p["reps"])},
            "push": lambda peer, s: push(peer, s.port, p["push"], p["push_s"]),
            "broadcast": lambda peer, s: broadcast(s, p["bcast_clients"], p["bcast"], p["bcast_s"]),
            "load": lambda peer, s: under_load(workers, peer, s.port, p["loaders"], p["load_s"], p["load_calls"]),
            "bytes": lambda peer, s: bytes_round_trips(peer, s.port, p["bytes_size"], p["bytes_reps"], p["big_s"]),
            "download": lambda peer, s: download(peer, s, p["transfer_mib"], p["transfer_s"]),
            "upload": lambda peer, s: upload(peer, s, p["transfer_mib"], p["transfer_s"]),
            "js-upload": lambda peer, s: js_upload(peer, s, p["js_mib"], p["js_s"]),
            "frames": lambda peer, s: frames(peer, s, p["frames_s"], p["frames_s"] + 60),
        }
        for name, function in workloads.items():
            if name in only:
                for peer in order:
                    if peer in BINARY_PEERS.get(name, PEERS):
                        attempt(peer, name, function, peer, servers[peer])
    finally:
        for server in servers.values():
            server.stop()
    return results


def short(value: Any) -> str:
    if isinstance(value, dict) and "error" in value:
        return "FAILED " + value["error"]
    text = json.dumps(value, default=str)
    return text if len(text) < 140 else text[:137] + "..."


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("websocket-server", "websockets", "python-socketio", "python-engineio", "simple-websocket",
                 "wsproto", "werkzeug", "websocket-client", "numpy", "orjson", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "versions": versions, "igor_commit": git_commit(ROOT)}


def git_commit(root: str) -> str:
    """The short commit of the checkout at ``root``, marked if it has uncommitted changes; "" if unknown."""
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "", ""
    return commit + (" (with uncommitted changes)" if dirty else "")


def cpu_ticks() -> Optional[Tuple[int, int]]:
    """(all CPU ticks, steal ticks) from /proc/stat: steal is time the hypervisor gave to other guests."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]), ticks[7]) if len(ticks) >= 8 else None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many times to run everything (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one run, small counts, under a minute")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    parser.add_argument("--out", help="folder for peers.md, peers.json and peers.png "
                                      "(default bench/results, or a temporary folder with --quick)")
    parser.add_argument("--update-readme", action="store_true",
                        help="also copy the table into bench/README.md, between its results markers")
    parser.add_argument("--serve", choices=PEERS, help="run one peer's server only (prints PORT n; for profiling)")
    parser.add_argument("--igor", metavar="CHECKOUT",
                        help="with --serve igor: import igor from this checkout (default: the one bench/ is in)")
    args = parser.parse_args()
    if args.igor and args.serve != "igor":
        parser.error("--igor goes with --serve igor (python -m bench.peers.ab compares two checkouts)")
    if args.serve:
        return serve(args.serve, args.igor)
    peers = [peer for peer in args.peers.split(",") if peer]
    only = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(peers) - set(PEERS)) + sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown peers or workloads: {', '.join(unknown)}")
    if args.update_readme and args.quick:
        parser.error("--update-readme takes a full run's table, not a --quick one")
    runs = 1 if args.quick else args.runs
    p = QUICK if args.quick else FULL
    out = args.out or (os.path.join(tempfile.gettempdir(), "igor-bench-quick") if args.quick
                       else os.path.join(ROOT, "bench", "results"))
    os.makedirs(out, exist_ok=True)
    log_dir = os.path.join(tempfile.gettempdir(), "igor-bench-logs")  # the servers' stderr
    os.makedirs(log_dir, exist_ok=True)
    for name in os.listdir(log_dir):
        os.remove(os.path.join(log_dir, name))

    data: Dict[str, Any] = {"machine": machine(), "params": p, "peers": peers, "blob_bytes": len(json.dumps(BLOB)),
                            "runs": []}
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    workers = Workers(max(p["parallel_clients"], p["loaders"], p["conn_processes"]))
    try:
        data["steal_percent"] = []
        for run in range(runs):
            log(f"run {run + 1} of {runs}")
            before = cpu_ticks()
            data["runs"].append(run_once(peers, p, workers, log_dir, only, run))
            after = cpu_ticks()
            if before and after and after[0] > before[0]:
                data["steal_percent"].append(100 * (after[1] - before[1]) / (after[0] - before[0]))
    finally:
        workers.close()
    data["seconds"] = time.monotonic() - began
    data["load"] = [load_before, os.getloadavg()[0]]
    table = report(data)
    with open(os.path.join(out, "peers.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "peers.json"), "w") as f:
        json.dump(data, f, indent=1)
    chart(data, os.path.join(out, "peers.png"))
    if args.update_readme:
        update_readme(table)
    print(table)
    print(f"({data['seconds']:.0f} s; wrote {out}/peers.md, peers.json, peers.png; server logs in {log_dir})")
    return 0
