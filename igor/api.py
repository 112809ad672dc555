"""The application's API: the actions dict, flattened, and each handler checked once.

``flatten`` turns nested dicts of handlers into the flat names clients call;
:class:`Handler` wraps one function with what the dispatcher needs to know
about it (its keyword arguments, whether it is ``async``), found once, at
construction, so that a handler Igor cannot call fails there and not on a
client's first call.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from .exceptions import ConfigError

__all__ = ["flatten", "Handler", "HANDLER_KEYWORDS"]

#: The keyword arguments a handler may declare.
HANDLER_KEYWORDS = frozenset({"session", "scope", "client_id", "stream_id", "server", "client"})


def flatten(api: Mapping[str, Any], separator: str = ".") -> Dict[str, Callable]:
    """Flatten nested dicts of handlers into ``{"events.create": handler, ...}``.

    The caller's dict is left as it is. A leaf that is not callable, or two
    paths that flatten to the same name, raise ``ValueError``.
    """
    flat: Dict[str, Callable] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"action names must be non-empty strings, got {key!r} under {prefix or 'the top'}")
            name = f"{prefix}{separator}{key}" if prefix else key
            if isinstance(value, Mapping):
                walk(name, value)
            elif not callable(value):
                raise ValueError(f"action {name!r} is not callable: {value!r}")
            elif name in flat:
                raise ValueError(f"two actions flatten to the same name {name!r}")
            else:
                flat[name] = value

    walk("", api)
    return flat


class Handler:
    """An action's function, checked once: which keyword arguments it takes, and how it runs."""

    def __init__(self, name: str, function: Callable):
        if isinstance(function, Mapping):
            raise ConfigError(f"action {name!r} is a dict, not a handler: nested APIs must go through "
                              f"igor.flatten(api) first")
        if not callable(function):
            raise ConfigError(f"action {name!r} is not callable: {function!r}")
        self.name = name
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        self.accepts: Optional[frozenset] = None
        # False for a plain handler(out, data): it is called without building any keywords.
        self.takes_keywords = True
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return  # a builtin without a signature: call it with everything
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
            raise ConfigError(f"handler {name!r} must take (out, data, ...), but its signature is "
                              f"{inspect.signature(function)}")
        for p in positional[2:] + [p for p in parameters if p.kind is p.KEYWORD_ONLY]:
            if p.default is p.empty and p.name not in HANDLER_KEYWORDS:
                raise ConfigError(f"handler {name!r} requires a parameter {p.name!r} that Igor cannot fill; "
                                  f"it passes only {', '.join(sorted(HANDLER_KEYWORDS))}")
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            self.accepts = frozenset(p.name for p in parameters
                                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)) & HANDLER_KEYWORDS
            self.takes_keywords = bool(self.accepts)

    def __call__(self, out: Any, data: Any, kwargs: Dict[str, Any]) -> Any:
        if self.accepts is not None:
            kwargs = {key: value for key, value in kwargs.items() if key in self.accepts}
        return self.function(out, data, **kwargs)
