"""User-facing errors.

Anything a user can cause (a bad file, a bad config value, a missing checkpoint) raises
:class:`RrpoError` with a message that names the file (and line) and the reason. The CLI prints
it as one line and exits with status 2, without a traceback. Bugs stay ordinary exceptions.
"""

from __future__ import annotations

import os


class RrpoError(Exception):
    """An error caused by input, reported to the user as one line."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.reason}"


class ConfigError(RrpoError):
    """A config file or override is wrong (unknown key, wrong type, invalid value)."""
