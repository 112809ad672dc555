"""A server for test_attacks.py, run in its own process so its RSS and threads can be read from /proc.

Usage: ``python attack_server.py '<config as JSON>'``. Prints the bound port on
stdout, logs warnings to stderr, serves until stdin closes or it is killed.

Actions:
- ``echo``: returns its data.
- ``block``: waits up to 60 s (a cancel ends it at once).
- ``never_reads``: an open call that takes input but never reads it.
- ``stats``: what the server holds (connections, pending handshakes, open streams, registered clients).
- ``broadcast``: starts the ``blast`` process's broadcasts, ``{"count", "min", "max", "seconds"}``;
  when they end it prints ``blast done <count sent>`` on stdout (a client asking
  meanwhile would get the broadcasts too, and be too slow for them).
"""

import json
import logging
import random
import sys
import threading
import time

from igor import IgorProcess, IgorServer


def echo(out, data):
    return data


def block(out, data):
    out.wait(60)


def never_reads(out, data):
    out.wait(60)


class Blast(IgorProcess):
    """Broadcasts payloads of random sizes to every client once asked; bounded in count and time."""

    def __init__(self):
        super().__init__(name="igor-blast")
        self.request = None
        self.requested = threading.Event()
        self.sent = 0

    def run(self):
        while not self.requested.is_set():
            if self.wait(0.05):
                return
        count, low, high, seconds = (self.request[key] for key in ("count", "min", "max", "seconds"))
        rng = random.Random(9)
        deadline = time.monotonic() + seconds
        # A few distinct payloads, cut to size per send, so encoding costs the process little.
        text = "x" * high
        while self.sent < count and time.monotonic() < deadline and not self.stopping:
            self.output.send("blob", text[:rng.randint(low, high)])
            self.sent += 1
            if not len(self.server.registry):
                break  # everyone was dropped
        print("blast done", self.sent, flush=True)


def main():
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    blast = Blast()

    def broadcast(out, data):
        blast.request = data
        blast.requested.set()
        return True

    def stats(out, data):
        return {**server.stats(), "clients": len(server.registry)}

    api = {"echo": echo, "block": block, "never_reads": never_reads, "broadcast": broadcast, "stats": stats}
    server = IgorServer(api, {"port": 0, **config})
    server.add_process("blast", blast)
    server.start()
    print(server.port, flush=True)
    # Until the test closes our stdin (or kills us).
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
