"""The server's configuration: a frozen, typed :class:`Config`.

Made from the config dict the original Igor's README shows (``IgorServer(api,
config={'port': 0})``) or from keyword arguments (``IgorServer(api,
port=0)``). Every value is checked once, here, so that a wrong type fails
at construction with a :class:`~igor.ConfigError` naming the key, and never
later inside a thread: a string where a list belongs must not quietly become
a tuple of characters that lets every origin in, and a negative or string
interval must not kill the heartbeat.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from .exceptions import ConfigError

__all__ = ["Config", "CONFIG"]

MiB = 1024 * 1024
#: Seconds ``call_client`` waits for a client's answer unless told otherwise.
CALL_TIMEOUT = 30.0


def _positive_number(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0 \
            or math.isinf(value):
        extra = " or None" if allow_none else ""
        raise ConfigError(f"config {key!r} must be a positive, finite number of seconds{extra}, got {value!r}")


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config {key!r} must be a positive integer, got {value!r}")


def _bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"config {key!r} must be True or False, got {value!r}")


def _string_list(key: str, value: Any) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    # A str is iterable: tuple('http://localhost:*') holds '*', which would allow everything.
    if isinstance(value, str):
        raise ConfigError(f"config {key!r} must be a list of strings, not a str: write [{value!r}]")
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(f"config {key!r} must be a list of strings, got {value!r}")
    if not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"config {key!r} must hold only non-empty strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Config:
    """Everything an :class:`~igor.IgorServer` can be told; the defaults suit a desktop app.

    See the README's table for what each key means. Build one with
    ``Config(port=0)`` or :meth:`from_mapping`; it cannot be changed after.
    """

    host: str = "127.0.0.1"
    port: int = 5678
    token: Union[str, bool, None] = None
    allowed_origins: Optional[Tuple[str, ...]] = None
    allowed_hosts: Optional[Tuple[str, ...]] = None
    max_clients: int = 64
    max_message_size: int = 16 * MiB
    max_streams: int = 128
    max_workers: int = 256
    max_client_memory: int = 64 * MiB
    inbox_size: int = 100
    ping_interval: Optional[float] = 20.0
    ping_timeout: float = 20.0
    send_queue_size: int = 10_000
    send_queue_bytes: int = 8 * MiB
    send_timeout: float = 10.0
    handshake_timeout: float = 10.0
    session_timeout: float = 10.0
    worker_idle_timeout: float = 2.0
    shutdown_timeout: float = 2.0
    static_dir: Optional[str] = None
    #: Folders whose files ``server.file_url()`` may give a URL to; resolved to real, absolute paths.
    file_roots: Tuple[str, ...] = ()
    ready_line: bool = False
    exit_with_parent: bool = False
    debug: bool = False
    logging: Optional[Mapping[str, Any]] = field(default=None)
    json_default: Optional[Callable[[Any], Any]] = None
    #: The original Igor's separate file server: ``{"enable", "port", "root_directory"}``, read-only here.
    file_server_config: Optional[Mapping[str, Any]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str):
            raise ConfigError(f"config 'host' must be a string, got {self.host!r}")
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"config 'port' must be an integer from 0 to 65535, got {port!r}")
        token = self.token
        if not (token is None or isinstance(token, bool)) and (
                not isinstance(token, str) or not token or any(c.isspace() or c == "," for c in token)):
            raise ConfigError("config 'token' must be a non-empty string without spaces or commas, "
                                  f"True, False or None, got {token!r}")
        for key in ("allowed_origins", "allowed_hosts"):
            object.__setattr__(self, key, _string_list(key, getattr(self, key)))
        for key in ("max_clients", "max_message_size", "max_streams", "max_workers", "max_client_memory",
                    "inbox_size", "send_queue_size", "send_queue_bytes"):
            _positive_int(key, getattr(self, key))
        if self.max_workers > MAX_WORKERS:
            raise ConfigError(f"config 'max_workers' must be at most {MAX_WORKERS}, got {self.max_workers!r}")
        _positive_number("ping_interval", self.ping_interval, allow_none=True)
        for key in ("ping_timeout", "send_timeout", "handshake_timeout", "session_timeout", "worker_idle_timeout",
                    "shutdown_timeout"):
            _positive_number(key, getattr(self, key))
        for key in ("ready_line", "exit_with_parent", "debug"):
            _bool(key, getattr(self, key))
        if self.static_dir is not None:
            if not isinstance(self.static_dir, (str, os.PathLike)) or not os.path.isdir(self.static_dir):
                raise ConfigError(f"config 'static_dir' must be an existing folder, got {self.static_dir!r}")
            object.__setattr__(self, "static_dir", os.fspath(self.static_dir))
        object.__setattr__(self, "file_roots", _folders("file_roots", self.file_roots))
        if self.json_default is not None and not callable(self.json_default):
            raise ConfigError(f"config 'json_default' must be a function, got {self.json_default!r}")
        if self.logging is not None:
            object.__setattr__(self, "logging", MappingProxyType(_logging_settings(self.logging)))
        if self.file_server_config is not None:
            object.__setattr__(self, "file_server_config", _file_server_settings(self.file_server_config))

    @property
    def input_window(self) -> int:
        """Bytes of unread input a protocol 3 client keeps in flight on one stream (told in the hello).

        A sixteenth of ``max_client_memory`` (4 MiB by default), so that a
        paced upload leaves the rest of the client's budget to its other calls.
        """
        return max(1, self.max_client_memory // 16)

    @classmethod
    def from_mapping(cls, config: Union[Mapping[str, Any], Config, None] = None, **overrides: Any) -> Config:
        """A Config from a dict (the original Igor's form) and/or keywords; keywords win.

        An unknown key is a :class:`~igor.ConfigError` that suggests the
        nearest valid one.
        """
        if isinstance(config, Config):
            values: Dict[str, Any] = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
        elif config is None:
            values = {}
        elif isinstance(config, Mapping):
            values = dict(config)
        else:
            raise ConfigError(f"config must be a dict or a Config, got {type(config).__name__}")
        values.update(overrides)
        for key, replacement in _ORIGINAL_ONLY.items():
            if key in values:
                value = values.pop(key)
                if value not in (None, False):
                    _deprecated(f"config {key!r} is the original Igor's and does nothing here: {replacement}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
                raise ConfigError(f"unknown config key {key!r}{hint}")
        return cls(**values)


def _deprecated(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=4)
    logging.getLogger("igor").warning("%s", message)


def _folders(key: str, value: Any) -> Tuple[str, ...]:
    """Existing folders, each resolved now (against the working directory, through links) to its real path.

    Resolved once, here: a later ``os.chdir`` or a link changed in the
    folder's path must not change which files are served.
    """
    if isinstance(value, (str, bytes, os.PathLike)):
        raise ConfigError(f"config {key!r} must be a list of folders, not one path: write [{value!r}]")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"config {key!r} must be a list of folders, got {value!r}")
    folders = []
    for item in value:
        if not isinstance(item, (str, os.PathLike)) or isinstance(os.fspath(item), bytes) or not os.fspath(item):
            raise ConfigError(f"config {key!r} must hold folder paths (str or os.PathLike), got {item!r}")
        if not os.path.isdir(item):
            raise ConfigError(f"config {key!r}: {os.fspath(item)!r} is not an existing folder")
        folders.append(os.path.realpath(item))
    return tuple(folders)


def _logging_settings(value: Any) -> Dict[str, Any]:
    if isinstance(value, Mapping) and "file_name" in value:
        _deprecated("config 'logging' key 'file_name' is the original Igor's name: write 'file'")
        value = {("file" if key == "file_name" else key): item for key, item in value.items()}
    if not isinstance(value, Mapping) or set(value) - {"level", "file"}:
        raise ConfigError("config 'logging' must be a dict with 'level' and/or 'file'")
    level = value.get("level", logging.WARNING)
    if isinstance(level, str):
        if not isinstance(logging.getLevelName(level.upper()), int):
            raise ConfigError(f"config 'logging' level {level!r} is not a logging level")
        level = logging.getLevelName(level.upper())
    elif isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"config 'logging' level must be a level name or number, got {level!r}")
    path = value.get("file")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"config 'logging' file must be a path, got {path!r}")
    return {"level": level, "file": path}


def _file_server_settings(value: Any) -> Optional[Mapping[str, Any]]:
    if not isinstance(value, Mapping) or set(value) - {"enable", "port", "root_directory"}:
        raise ConfigError("config 'file_server_config' must be a dict with 'enable', 'port' and 'root_directory'")
    enable, port, root = value.get("enable", False), value.get("port", 8080), value.get("root_directory")
    _bool("file_server_config['enable']", enable)
    if not enable:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"config 'file_server_config' port must be an integer from 0 to 65535, got {port!r}")
    if root is None:
        raise ConfigError("config 'file_server_config' needs a 'root_directory': the original Igor served the "
                          "whole disk when it had none, which Igor does not do")
    if not isinstance(root, (str, os.PathLike)) or not os.path.isdir(root):
        raise ConfigError(f"config 'file_server_config' root_directory must be an existing folder, got {root!r}")
    _deprecated("config 'file_server_config' is the original Igor's file server: Igor serves its root_directory "
                "read-only, on 127.0.0.1, with no CORS; it takes no POST writes (send the data to a handler "
                "instead). Use config 'file_roots' and server.file_url(path) instead: signed, expiring URLs "
                "on the server's own port")
    return MappingProxyType({"port": port, "root_directory": os.fspath(root)})


# Keys only the original Igor had, and what replaces them.
_ORIGINAL_ONLY = {
    "file_server": "file_server_config's 'enable' turns its file server on (or use static_dir)",
}

#: The most ``max_workers`` may be: past it, threads cost more than they give on any desktop.
MAX_WORKERS = 512

#: The defaults, as the original Igor's ``CONFIG`` dict: code written for it sets keys here before
#: constructing ``IgorServer()`` without a config, and they are used (and checked by :class:`Config`).
CONFIG: Dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Config)}
