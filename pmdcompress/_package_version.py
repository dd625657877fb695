"""The package's version, in a module of its own: every layer may record it without importing the package root
(which re-exports the pipeline, the top of the data flow).  pyproject.toml reads it from here."""

__version__ = "0.1.0"
