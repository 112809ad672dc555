"""What the command line names, loaded: ``MODULE:ATTRIBUTE`` and ``NAME=module:Class``.

``python -m igor`` and ``python -m igor types`` both start from a spec the
user typed, so both get the same lookup and the same one-line mistakes. A
mistake raises :class:`UsageError`, a :class:`SystemExit` whose message is
the line to show; the commands catch it, write it to stderr and exit with 2.

It imports nothing else of Igor's: ``__main__`` and ``typescript`` both
import it, and neither needs the other.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, NoReturn, Tuple

__all__ = ["UsageError", "resolve", "load_api", "load_process"]


class UsageError(SystemExit):
    """A mistake in what the command line asks for, told in one line (and, uncaught, an exit)."""

    def __init__(self, message: str):
        super().__init__(f"igor: {message}")


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def resolve(spec: str, option: str = "the API") -> Any:
    """The object ``module:attribute`` names.

    The attribute may be dotted (``app:handlers.API``). The current folder is
    searched for the module, as ``python -m`` does. ``option`` names what the
    spec is for in the error messages. Raises :class:`UsageError` saying what
    is missing.
    """
    module_part, colon, attribute = spec.partition(":")
    if not colon or not module_part or not attribute:
        _fail(f"expected module:attribute for {option} (e.g. myapp.api:API), got {spec!r}")
    # Like `python -m`, let the current folder's modules be found (the `igor` script's own folder is not it).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module, owner = _import_module(module_part, spec), f"module {module_part!r}"
    value: Any = module
    parts = attribute.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(value, part):
            where = owner if depth == 0 else f"{module_part}:{'.'.join(parts[:depth])}"
            _fail(f"{where} has no attribute {part!r} (in {spec!r})")
        value = getattr(value, part)
    return value


def _import_module(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module (or its package) missing is the user's spelling; a module
        # that fails to import something of its own gets its traceback.
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        if module_name.endswith(".py"):
            _fail(f"no module named {module_name!r}: write the module's name without .py, "
                  f"e.g. {module_name[:-3]}:{spec.partition(':')[2]}")
        _fail(f"no module named {exc.name!r} (in {spec!r}): run igor from the folder that holds it, "
              f"or add that folder to PYTHONPATH")


def load_api(spec: str) -> Mapping:
    """The API dict ``module:attribute`` names (``igor`` serves it, ``igor types`` declares it)."""
    api = resolve(spec)
    if not isinstance(api, Mapping):
        _fail(f"{spec} is a {type(api).__name__}, not a dict of actions")
    return api


def load_process(option: str) -> Tuple[str, threading.Thread]:
    """``NAME=module:Class`` as (NAME, a new instance of Class), which must be a ``threading.Thread``."""
    name, equals, spec = option.partition("=")
    if not equals or not name or not spec:
        _fail(f"--process must be given as NAME=module:Class, got {option!r}")
    factory = resolve(spec, f"--process {name}")
    if isinstance(factory, type) and not issubclass(factory, threading.Thread):
        _fail(f"--process {name}: {spec} is not a threading.Thread subclass (subclass igor.IgorProcess)")
    if not callable(factory):
        _fail(f"--process {name}: {spec} is a {type(factory).__name__}, not a class")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        _fail(f"--process {name}: {spec} needs arguments, but it is created with none")
    except ValueError:
        pass  # no signature to check: just call it
    thread = factory()
    if not isinstance(thread, threading.Thread):
        _fail(f"--process {name}: {spec}() made a {type(thread).__name__}, not a threading.Thread")
    return name, thread
