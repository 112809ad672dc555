"""Igor: use a Python backend from a web-based desktop UI over one localhost WebSocket.

The smallest program::

    from igor import IgorServer, flatten

    def hello(out, data, **kwargs):
        out.send('Hello ' + data['name'])

    IgorServer(api=flatten({'hello': hello})).run_forever()
"""

import logging

from .api import flatten
from .config import Config
from .exceptions import (
    CallTimeout,
    ClientIdTaken,
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    IgorError,
    InboxFull,
    InputEnded,
    InputTimeout,
    OverBudget,
    ProtocolError,
    RemoteError,
    StreamCancelled,
    StreamClosed,
    StreamIdInUse,
    TooManyStreams,
    UnknownAction,
    UnknownCall,
    UnknownClient,
    UnknownProcess,
    UnknownStream,
)
from .process import IgorProcess, Inbound, ProcessOutput
from .registry import Client
from .server import CONFIG, IgorServer
from .stream import Stream

# The application decides where log records go; without its say, none are printed.
logging.getLogger("igor").addHandler(logging.NullHandler())

__version__ = "1.0.0"

__all__ = [
    "IgorServer",
    "IgorProcess",
    "CONFIG",
    "Config",
    "Inbound",
    "flatten",
    "Stream",
    "ProcessOutput",
    "Client",
    "IgorClient",
    "IgorError",
    "ProtocolError",
    "UnknownAction",
    "StreamIdInUse",
    "ClientIdTaken",
    "StreamClosed",
    "StreamCancelled",
    "UnknownClient",
    "ConfigError",
    "RemoteError",
    "ConnectionClosed",
    "CallTimeout",
    "ConnectionFailed",
    "TooManyStreams",
    "InboxFull",
    "OverBudget",
    "UnknownStream",
    "UnknownProcess",
    "UnknownCall",
    "InputEnded",
    "InputTimeout",
]


def __getattr__(name: str):
    # The client needs websocket-client, an optional extra: import it only when asked for.
    if name == "IgorClient":
        from .client import IgorClient

        return IgorClient
    raise AttributeError(f"module 'igor' has no attribute {name!r}")
