"""Command line: ``python -m igor module:attribute`` serves that API.

Made to be spawned by a UI process: it prints the ``IGOR_READY`` line once
listening, generates a token unless given one, and by default exits with its
parent when its stdin is a pipe.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import List, Optional

from .core import flatten
from .lifecycle import stdin_is_pipe
from .server import IgorServer


def _load(spec: str) -> Mapping:
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise SystemExit(f"igor: expected module:attribute, got {spec!r}")
    # Like `python -m`, let the current folder's modules be found.
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    api = module
    for part in attribute.split("."):
        api = getattr(api, part)
    if not isinstance(api, Mapping):
        raise SystemExit(f"igor: {spec} is a {type(api).__name__}, not a dict of actions")
    return api


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["types"]:  # `python -m igor types module:API`: TypeScript declarations
        from .typescript import main as types_main

        return types_main(argv[1:])
    parser = argparse.ArgumentParser(prog="igor", description="Serve a Python API to a web UI over WebSocket.")
    parser.add_argument("api", help="the API to serve, as module:attribute (a dict of actions, nested or flat)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument("--token", help="the token clients must present (default: IGOR_TOKEN, else a new one)")
    parser.add_argument("--no-token", action="store_true", help="accept clients without a token (loopback only)")
    parser.add_argument("--static", metavar="DIR", help="also serve the files of DIR over plain HTTP")
    parser.add_argument("--exit-with-parent", dest="exit_with_parent", action="store_true", default=None,
                        help="shut down when stdin closes or the parent process dies (default: when stdin is a pipe)")
    parser.add_argument("--no-exit-with-parent", dest="exit_with_parent", action="store_false")
    parser.add_argument("--debug", action="store_true", help="send tracebacks to clients and log at DEBUG level")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = False if args.no_token else args.token or os.environ.get("IGOR_TOKEN") or True
    config = {
        "host": args.host,
        "port": args.port,
        "token": token,
        "static_dir": args.static,
        "ready_line": True,
        "exit_with_parent": stdin_is_pipe() if args.exit_with_parent is None else args.exit_with_parent,
        "debug": args.debug,
        "logging": {"level": logging.DEBUG if args.debug else logging.INFO},
    }
    server = IgorServer(api=flatten(_load(args.api)), config=config)
    return server.run_forever() or 0


if __name__ == "__main__":
    sys.exit(main())
