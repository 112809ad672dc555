"""Background processes: threads that push to clients on their own schedule."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from .core import ProcessOutput
    from .server import IgorServer

__all__ = ["IgorProcess"]


class IgorProcess(threading.Thread):
    """A ``threading.Thread`` the server can ask to stop.

    Subclass it and write :meth:`run`; use :meth:`wait` where you would sleep,
    so a shutdown ends the loop at once::

        class Clock(IgorProcess):
            def run(self):
                while not self.wait(1.0):
                    self.output.send('tick', time.time())

    ``process_id``, ``output``, ``scope`` and ``server`` are filled in by
    :meth:`IgorServer.add_process <igor.IgorServer.add_process>`. Any plain
    ``threading.Thread`` works as a process too; this class only adds the
    stop request.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("daemon", True)
        super().__init__(*args, **kwargs)
        self.process_id: Optional[str] = None
        self.output: Optional[ProcessOutput] = None
        self.scope: Optional[Dict[str, Any]] = None
        self.server: Optional[IgorServer] = None
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        """Ask the process to stop; :meth:`wait` returns True from now on."""
        self._stop_requested.set()

    @property
    def stopping(self) -> bool:
        """True once the server (or anyone) asked this process to stop."""
        return self._stop_requested.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as a stop is requested."""
        return self._stop_requested.wait(timeout)
