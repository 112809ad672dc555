"""Make this checkout's igor importable the way ``pip install -e .`` makes it, and only that way.

    python3 test/editable_site.py DIR    # then run with PYTHONPATH=DIR

DIR gets setuptools' own editable finder for ``igor`` (a ``sys.meta_path``
finder, not a ``sys.path`` entry, which is why PyInstaller's analysis does not
see it) and a ``sitecustomize`` that installs it at start, as the ``.pth`` of
a real editable install does. It goes first, before the finder of an editable
install of another checkout (a developer's /work/main), as this checkout's own
install is the only one in CI. test_freeze.py and freeze-own.test.mjs build
with it, so both freeze igor from an editable install on every machine.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINDER = "__editable___igor_checkout_finder"


def write(folder: str) -> None:
    from setuptools.command.editable_wheel import _finder_template

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, FINDER + ".py"), "w", encoding="utf-8") as f:
        f.write(_finder_template(FINDER, {"igor": os.path.join(ROOT, "igor")}, {}))
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(f"import sys\n\nimport {FINDER}\n\n{FINDER}.install()\n"
                "sys.meta_path.insert(0, sys.meta_path.pop())  # before any other editable igor's finder\n")


if __name__ == "__main__":
    write(sys.argv[1])
