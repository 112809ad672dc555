"""Command line: ``python -m igor [serve] MODULE:API`` serves that API, ``igor types`` declares it.

Made to be spawned by a UI process: it prints the ``IGOR_READY`` line once
listening, generates a token unless given one, and by default exits with its
parent when its stdin is a pipe. The mistakes a new user makes (a wrong
``MODULE:API``, a port in use, an open host without a token, a handler
the server refuses) are one line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import sys
from typing import Any, List, NoReturn, Optional
from urllib.parse import quote

from .core import flatten
from .exceptions import ConfigError
from .lifecycle import stdin_is_pipe
from .loader import UsageError, check_package, load_api, load_callable, load_process
from .server import IgorServer

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_ADDRESS_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_USAGE = """igor [serve] MODULE:API [options]
       igor dev MODULE:API [--watch DIR]... [options]
       igor app MODULE:API --static DIR [--browser PATH] [--browser-arg ARG]... [options]
       igor types MODULE:API [-o FILE]
       igor freeze MODULE:API [options]"""

_DESCRIPTION = """\
Serve a Python API to a web UI over one localhost WebSocket, show the UI in a
browser's app-mode window, write TypeScript declarations of its actions, or
freeze it into an executable.

commands:
  serve    serve the API (the default command: igor MODULE:API is igor serve MODULE:API)
  dev      serve the API, and restart it on the same port and token when its Python files change
  app      serve the API and show the --static page in a browser's app-mode window; exit when it closes
  types    write TypeScript declarations of the API's actions (see igor types --help)
  freeze   build a one-folder executable that serves the API, with PyInstaller (see igor freeze --help)

MODULE:API names the dict of actions, nested or flat: an attribute of a module
(myapp.api:API) or of a file (path/to/api.py:API). Modules are looked for in the
current folder first."""

_EPILOG = """\
Once listening, serve writes one line to stdout, IGOR_READY {"url": ..., "port": ..., "token": ...},
and nothing else; with --static it writes the page's address, token included, to stderr.
A mistake in the command is one line on stderr and exit status 2."""


def _parser() -> argparse.ArgumentParser:
    from .version import __version__  # not at the top: check_package() must be able to run first

    parser = argparse.ArgumentParser(prog="igor", usage=_USAGE, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("api", metavar="MODULE:API", help="the API to serve (see above)")
    parser.add_argument("--version", action="version", version=f"igor {__version__}")
    # Apart from --help and --version: these belong to serve, and types has options of its own.
    serve = parser.add_argument_group("serve options")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    serve.add_argument("--token", help="the token clients must present (default: IGOR_TOKEN, else a new one)")
    serve.add_argument("--no-token", action="store_true", help="accept clients without a token (loopback only)")
    serve.add_argument("--static", metavar="DIR", help="also serve the files of DIR over plain HTTP")
    serve.add_argument("--process", metavar="NAME=module:Class", action="append", default=[],
                       help="run a background process: a threading.Thread subclass (e.g. an igor.IgorProcess), "
                            "created with no arguments, under the id NAME; repeatable")
    serve.add_argument("--json-default", metavar="module:function",
                       help="encode the values JSON cannot hold (datetime, set, your classes) with this function, "
                            "as json.dumps(default=...) does: the config's json_default")
    serve.add_argument("--exit-with-parent", dest="exit_with_parent", action="store_true", default=None,
                       help="shut down when stdin closes or the parent process dies (default: when stdin is a pipe)")
    serve.add_argument("--no-exit-with-parent", dest="exit_with_parent", action="store_false",
                       help="keep serving when stdin closes")
    serve.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                       help="log to stderr from this level on (default INFO, DEBUG with --debug)")
    serve.add_argument("--debug", action="store_true", help="send tracebacks to clients and log at DEBUG level")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_package()
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if argv[:1] == ["types"]:  # `python -m igor types module:API`: TypeScript declarations
        from .typescript import main as types_main

        return types_main(argv[1:])
    if argv[:1] == ["freeze"]:  # `python -m igor freeze module:API`: a PyInstaller app that serves it
        from .freeze import main as freeze_main

        return freeze_main(argv[1:])
    if argv[:1] == ["dev"]:  # `igor dev MODULE:API`: serve, and reload the backend when its files change
        from .dev import dev_main

        return dev_main(_parser(), argv[1:], _build, _page_url)
    if argv[:1] == ["app"]:  # `igor app MODULE:API --static DIR`: serve, and show the page in a browser window
        from .window import app_main

        return app_main(_parser(), argv[1:], _serve)
    # A subcommand of its own, and the default: `igor app:API` has always served.
    args = _parser().parse_args(argv[1:] if argv[:1] == ["serve"] else argv)
    try:
        return _serve(args)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2


def _serve(args: argparse.Namespace) -> int:
    level = args.log_level or ("DEBUG" if args.debug else "INFO")
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = _build(args)
    try:
        server.start()
    except OSError as exc:
        if exc.errno in _ADDRESS_IN_USE:
            _fail(f"port {args.port} is in use: pick another with --port, or --port 0 for a free one")
        _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    if args.static:
        # For a person running it by hand: the page takes its token from the address's fragment, which a browser
        # never sends, so this is the address to open. stdout stays the ready line's alone, for the UI process.
        sys.stderr.write(f"igor: open {_page_url(server)}\n")
        sys.stderr.flush()
    if getattr(args, "window", None) is not None:  # igor app (see igor.window): the page in a browser window
        args.window(server)
    return server.run_forever() or 0


def _build(args: argparse.Namespace, **overrides: Any) -> IgorServer:
    """The server the serve options describe, not started; ``overrides`` replace config keys (for igor dev)."""
    if args.no_token and not _is_loopback(args.host):
        _fail(f"--no-token would let anyone who can reach {args.host} drive this backend: drop --no-token "
              f"(a token is then generated) or bind --host 127.0.0.1")
    api = load_api(args.api)
    processes = [load_process(option) for option in args.process]
    json_default = load_callable(args.json_default, "--json-default") if args.json_default else None
    token = False if args.no_token else args.token or os.environ.get("IGOR_TOKEN") or True
    config = {
        "host": args.host,
        "port": args.port,
        "token": token,
        "static_dir": args.static,
        "ready_line": True,
        "exit_with_parent": stdin_is_pipe() if args.exit_with_parent is None else args.exit_with_parent,
        "debug": args.debug,
        "json_default": json_default,
        **overrides,
    }
    try:
        server = IgorServer(api=flatten(api), config=config)
        for name, thread in processes:
            server.add_process(name, thread)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    return server


def _page_url(server: IgorServer) -> str:
    """The address of the --static page, with the token in the fragment where the demo page looks for it."""
    address = "http" + server.url[len("ws"):]
    return f"{address}#token={quote(server.token, safe='')}" if server.token else address


if __name__ == "__main__":
    sys.exit(main())
