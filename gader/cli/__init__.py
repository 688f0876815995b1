"""The ``gader`` command."""

from gader.cli.app import app, main

__all__ = ["app", "main"]
