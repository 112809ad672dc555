"""Igor's version, in a module of its own: ``python -m igor --version`` reads it without the package's other names."""

__version__ = "2.0.0"
