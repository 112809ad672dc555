"""Igor: use a Python backend from a web-based desktop UI over one localhost WebSocket.

The smallest program::

    from igor import IgorServer, flatten

    def hello(out, data, **kwargs):
        out.send('Hello ' + data['name'])

    IgorServer(api=flatten({'hello': hello})).run_forever()
"""

import importlib
import logging
import warnings
from typing import TYPE_CHECKING, Any, List

from . import exceptions
from .exceptions import *  # noqa: F403 (every exception is public; exceptions.__all__ lists them)
from .version import __version__ as __version__

if TYPE_CHECKING:
    # What the lazy names below resolve to, for type checkers; "as" re-exports
    # IgorClient, which __all__ leaves out.
    from .api import flatten
    from .client import IgorClient as IgorClient
    from .client_reconnect import Reconnect
    from .config import Config
    from .process import IgorProcess, Inbound, ProcessOutput
    from .registry import ConnectedClient
    from .server import CONFIG, IgorServer
    from .stream import Stream

# The application decides where log records go; without its say, none are printed.
logging.getLogger("igor").addHandler(logging.NullHandler())

__all__ = [
    "IgorServer",
    "IgorProcess",
    "CONFIG",
    "Config",
    "Inbound",
    "flatten",
    "Stream",
    "ProcessOutput",
    "ConnectedClient",
    "Reconnect",
]
__all__ += exceptions.__all__


# Each name is imported from its module when first asked for, so that the
# client (igor.client, which needs only the protocol and the exceptions) can
# be imported without the server, and the server without websocket-client.
_LAZY = {
    "flatten": "api",
    "Config": "config",
    "IgorProcess": "process",
    "Inbound": "process",
    "ProcessOutput": "process",
    "ConnectedClient": "registry",
    "Reconnect": "client_reconnect",
    "CONFIG": "server",
    "IgorServer": "server",
    "Stream": "stream",
    # Not in __all__: it needs the optional websocket-client, and "from igor
    # import *" must work without it. igor.client's ImportError says what to install.
    "IgorClient": "client",
}


if not TYPE_CHECKING:
    # Hidden from type checkers, which read the imports above instead: to one,
    # a module __getattr__ would make every misspelt name a valid Any.

    def __getattr__(name: str) -> Any:
        if name == "Client":
            warnings.warn("igor.Client is now igor.ConnectedClient (the server's view of a connection), "
                          "beside igor.IgorClient (the Python client); the old name goes in 3.0",
                          DeprecationWarning, stacklevel=2)
            name = "ConnectedClient"
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'igor' has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> List[str]:
        return sorted(set(globals()) | set(_LAZY))
