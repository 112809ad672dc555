"""A backend of its own, frozen with `python -m igor freeze` by test/test_freeze.py and
clients/js/test/freeze-own.test.mjs, each from a copy of this folder outside the checkout:

    python -m igor freeze api.py:API --static ui --process echo=api:Echo --json-default api:encode
"""

import datetime
import sys

from greeting import greet  # a module beside this one: the build must find the app's folder

from igor import IgorProcess

DAY = datetime.date(2026, 12, 3)


def hello(out, data):
    return greet(data["name"])


def where(out, data):
    # Frozen, this module is loaded from inside the bundle, not from the folder it was built from.
    return {"frozen": bool(getattr(sys, "frozen", False)), "file": __file__, "bundle": getattr(sys, "_MEIPASS", None)}


def today(out, data):
    return {"day": DAY}  # not JSON: encode() below makes it a string


def encode(value):
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__}")


def total(out, data):
    # Imported here, as igor.frames imports it: the build leaves out only igor's own use of numpy.
    import numpy

    return int(numpy.array(data).sum())


API = {"hello": hello, "app": {"where": where, "today": today, "total": total}}


class Echo(IgorProcess):
    """Pushes back to its sender what a client sends it, with a date that needs encode()."""

    def run(self):
        while not self.stopping:
            message = self.receive()
            if message is not None:
                self.output.send("echoed", {"data": message.data, "day": DAY}, client_id=message.client_id)
