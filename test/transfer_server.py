"""A server in its own process for the transfer tests: their RSS is measured from /proc, apart from the client's.

Prints its port on stdout, then serves until stdin closes.
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from igor import IgorServer  # noqa: E402

MiB = 1 << 20


def save(out, data):
    """An upload written to disk (data: the path), as the README's example does."""
    return out.receive_file(data)


def count(out, data):
    """An upload counted and hashed, chunk by chunk."""
    digest, size = hashlib.sha256(), 0
    for chunk in out:
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def push(out, data):
    """``data`` MiB in 1 MiB chunks: fresh bytes each, as reading a file makes them."""
    out.send_chunks((bytes(MiB) for _ in range(data)), size=data * MiB, name="zeros")


def send_file(out, data):
    return out.send_file(data)


def stats(out, data, server):
    return server.stats()


def main():
    server = IgorServer(api={"save": save, "count": count, "push": push, "send_file": send_file, "stats": stats},
                        config={"port": 0, "token": False})
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
