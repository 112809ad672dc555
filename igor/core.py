"""Kept for the original Igor's imports (``from igor.core import flatten``)."""

from .api import flatten
from .process import ProcessOutput
from .stream import Stream

__all__ = ["flatten", "Stream", "ProcessOutput"]
