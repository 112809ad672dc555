"""Freeze the demo backend (server_instance.py) into one folder with PyInstaller.

    pip install -e '.[freeze]'                    # PyInstaller, pinned
    python examples/electron/freeze.py            # -> examples/electron/backend/igor-backend/

The folder holds an executable, ``igor-backend`` (``igor-backend.exe`` on
Windows), that runs without any Python installed, and everything it needs:
copy the whole folder into the packaged app (see README.md beside this file).
The demo page (examples/demo/) goes in as data, at the same relative place
``server_instance.py`` looks for it. PyInstaller does not cross-compile: build
on each OS you ship for.

Options: ``--dist DIR`` (where the folder goes), ``--work DIR`` (PyInstaller's
scratch files), ``--name NAME`` (of the folder and the executable). Passing
both puts nothing in the checkout, which is what the tests do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from igor.freeze import onedir_options

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO_ROOT, "server_instance.py")
DEMO_DIR = os.path.join(REPO_ROOT, "examples", "demo")

log = logging.getLogger("igor.freeze")


def pyinstaller_args(dist: str, work: str, name: str) -> list:
    """The PyInstaller command line (without the program name) for the demo backend."""
    return [
        SCRIPT,
        *onedir_options(name, dist, work),
        # Lands in sys._MEIPASS/examples/demo. server_instance.py finds it with no
        # frozen-app branch: PyInstaller sets the entry script's __file__ to
        # sys._MEIPASS/server_instance.py, so paths relative to it keep working.
        "--add-data", f"{DEMO_DIR}{os.pathsep}{os.path.join('examples', 'demo')}",
        # igor uses numpy only for large messages, and only if it is there
        # (the speedups extra); leaving it out saves ~40 MB and most of the build.
        "--exclude-module", "numpy",
    ]


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dist", default=os.path.join(HERE, "backend"),
                        help="folder to put the frozen app in (default: examples/electron/backend)")
    parser.add_argument("--work", default=None,
                        help="folder for PyInstaller's build files (default: a temporary folder)")
    parser.add_argument("--name", default="igor-backend", help="name of the folder and executable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        import PyInstaller.__main__
    except ImportError:
        log.error("PyInstaller is not installed: pip install -e '.[freeze]'")
        return 2
    if not os.path.isfile(os.path.join(DEMO_DIR, "lib", "index.js")):
        log.warning("examples/demo/lib/ is missing, so the frozen backend serves the demo page without "
                    "its JS client: npm --prefix clients/js ci && npm --prefix clients/js run build")

    dist = os.path.abspath(args.dist)
    if args.work is not None:
        PyInstaller.__main__.run(pyinstaller_args(dist, os.path.abspath(args.work), args.name))
    else:
        with tempfile.TemporaryDirectory(prefix="igor-freeze-") as work:
            PyInstaller.__main__.run(pyinstaller_args(dist, work, args.name))
    executable = os.path.join(dist, args.name, args.name + (".exe" if sys.platform == "win32" else ""))
    if not os.path.isfile(executable):
        log.error("PyInstaller finished but %s is not there", executable)
        return 1
    log.info("frozen backend: %s", executable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
