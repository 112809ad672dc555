"""Serial calls/s of two Igor checkouts, interleaved: does B keep A's serial speed?

    python -m bench.peers.ab --a CHECKOUT_A --b CHECKOUT_B [--rounds 10] [--calls 2000] [--seconds 4]

Each round measures the serial workload (row 1 of the table: one client, one
echo call after another on one connection) on a fresh server of each checkout,
each in a subprocess of its own that imports igor from that checkout. Which
side goes first alternates from round to round, so a drift of the host's speed
falls on both. Prints each round, then the median calls/s of each side and B/A.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from typing import Dict, List, Tuple

from .common import log
from .runner import FULL, cpu_ticks, git_commit
from .servers import ServerProcess
from .workloads import serial_calls


def checkout(path: str) -> str:
    root = os.path.abspath(path)
    if not os.path.isfile(os.path.join(root, "igor", "__init__.py")):
        raise argparse.ArgumentTypeError(f"{path} has no igor/__init__.py: not an Igor checkout")
    return root


def measure(root: str, log_dir: str, calls: int, seconds: float) -> Tuple[float, str]:
    """Serial calls/s on a fresh server of the checkout at ``root``, and the igor it imported."""
    server = ServerProcess("igor", log_dir, igor_root=root)
    try:
        return serial_calls("igor", server.port, calls, seconds)["calls_per_s"], server.igor_file or "?"
    finally:
        server.stop()


def span(values: List[float], form: str) -> str:
    return f"{form.format(min(values))} – {form.format(max(values))}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=checkout, required=True, help="the checkout to compare against (its root)")
    parser.add_argument("--b", type=checkout, required=True, help="the checkout with the change")
    parser.add_argument("--rounds", type=int, default=10, help="measurements of each side (default 10)")
    parser.add_argument("--calls", type=int, default=FULL["serial"], help=f"calls each (default {FULL['serial']})")
    parser.add_argument("--seconds", type=float, default=FULL["serial_s"],
                        help=f"at most this long each (default {FULL['serial_s']:g})")
    args = parser.parse_args()
    sides = {"A": args.a, "B": args.b}
    logs = {}
    for side in sides:
        logs[side] = os.path.join(tempfile.gettempdir(), "igor-bench-ab-logs", side)
        os.makedirs(logs[side], exist_ok=True)
        if os.path.exists(os.path.join(logs[side], "igor.log")):
            os.remove(os.path.join(logs[side], "igor.log"))

    rates: Dict[str, List[float]] = {"A": [], "B": []}
    imported: Dict[str, str] = {}
    before = cpu_ticks()
    for turn in range(args.rounds):
        for side in ("A", "B") if turn % 2 == 0 else ("B", "A"):
            rate, imported[side] = measure(sides[side], logs[side], args.calls, args.seconds)
            rates[side].append(rate)
        log(f"round {turn + 1} of {args.rounds}: A {rates['A'][-1]:,.0f}, B {rates['B'][-1]:,.0f} calls/s, "
            f"B/A {rates['B'][-1] / rates['A'][-1]:.3f}")
    after = cpu_ticks()

    ratios = [b / a for a, b in zip(rates["A"], rates["B"])]
    medians = {side: statistics.median(values) for side, values in rates.items()}
    for side, root in sides.items():
        print(f"{side}: {root} at {git_commit(root) or 'an unknown commit'}; igor from {imported[side]}")
    print(f"serial calls/s, {args.rounds} rounds of {args.calls:,} calls (at most {args.seconds:g} s), "
          "a fresh server each, A and B alternating:")
    for side, values in rates.items():
        print(f"  {side}  median {medians[side]:,.0f}  (range {span(values, '{:,.0f}')})")
    print(f"  B/A  {medians['B'] / medians['A']:.3f} (ratio of the medians); per-round ratios "
          f"{span(ratios, '{:.3f}')}, median {statistics.median(ratios):.3f}")
    if before and after and after[0] > before[0]:
        print(f"  CPU time taken by the host (steal) during the rounds: "
              f"{100 * (after[1] - before[1]) / (after[0] - before[0]):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
