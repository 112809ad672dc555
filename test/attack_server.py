"""A server for test_attacks.py, run in its own process so its RSS and threads can be read from /proc.

Usage: ``python attack_server.py '<config as JSON>'``. Prints the bound port on
stdout, logs warnings to stderr, serves until stdin closes or it is killed.

Actions:
- ``echo``: returns its data.
- ``block``: waits up to 60 s (a cancel ends it at once).
- ``never_reads``: an open call that takes input but never reads it.
- ``stats``: what the server holds (connections, pending handshakes, open streams, registered clients).
- ``sleepy`` / ``sleepy_async``: sleep ``data`` seconds (30) ignoring cancels, on a worker or in ``to_thread``.
- ``blocks_loop``: an async handler that blocks the shared loop with ``time.sleep``.
- ``reads_slowly``: reads its input at 20 values a second.
- processes ``sink`` (takes input, never reads) and ``reader`` (reads, answers each sender with ``read``).
- ``broadcast``: starts the ``blast`` process's broadcasts, ``{"count", "min", "max", "seconds"}``;
  when they end it prints ``blast done <count sent>`` on stdout (a client asking
  meanwhile would get the broadcasts too, and be too slow for them).
"""

import asyncio
import json
import logging
import random
import sys
import threading
import time

from igor import IgorProcess, IgorServer, UnknownClient


def echo(out, data):
    return data


def block(out, data):
    out.wait(60)


def never_reads(out, data):
    out.wait(60)


def sleepy(out, data):
    """Ignores its cancel, as a blocking query does: the typeahead pattern's handler."""
    time.sleep(data if isinstance(data, (int, float)) else 30)


async def sleepy_async(out, data):
    await asyncio.to_thread(time.sleep, data if isinstance(data, (int, float)) else 30)


async def blocks_loop(out, data):
    time.sleep(data if isinstance(data, (int, float)) else 1.5)  # the mistake: a blocking call on the loop


def reads_slowly(out, data):
    for _ in out:
        time.sleep(0.05)


class Sink(IgorProcess):
    """Takes input and never reads it."""

    def run(self):
        self.wait()


class Reader(IgorProcess):
    """Reads what it is sent, and answers each sender."""

    def run(self):
        while not self.stopping:
            message = self.receive(0.5)
            if message is not None:
                try:
                    self.output.send("read", None, client_id=message.client_id)
                except UnknownClient:
                    pass  # it left after sending (a binary frame under protocol 1 closes it at once)


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

    def threads(out, data):
        return threading.active_count()

    api = {"echo": echo, "block": block, "never_reads": never_reads, "broadcast": broadcast, "stats": stats,
           "sleepy": sleepy, "sleepy_async": sleepy_async, "blocks_loop": blocks_loop, "reads_slowly": reads_slowly,
           "threads": threads}
    server = IgorServer(api, {"port": 0, **config})
    server.add_process("blast", blast)
    server.add_process("sink", Sink())
    server.add_process("reader", Reader())
    server.start()
    print(server.port, flush=True)
    # Until the test closes our stdin (or kills us).
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
