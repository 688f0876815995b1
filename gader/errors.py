"""Errors the library raises on purpose.

Every error a user can cause (a bad file, a wrong shape, an unknown option) is a ``GaderError`` with a
message that names the problem; the CLI prints it as one line and the service maps it to a 4xx.
"""


class GaderError(Exception):
    """Base class for errors caused by input, not by a bug."""


class DataFormatError(GaderError):
    """A file or array does not have the layout, dtype or shape that was expected."""


class MissingArrayError(DataFormatError, KeyError):
    """A file lacks an array it must have. Also a KeyError, so that ``mapping.get`` works."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetLayoutError(GaderError):
    """A directory is not a dataset layout that gader can read."""
