"""Kept for the seed's imports (``from igor.core import flatten``); the code lives in :mod:`igor.stream`."""

from .stream import ProcessOutput, Stream, flatten

__all__ = ["flatten", "Stream", "ProcessOutput"]
