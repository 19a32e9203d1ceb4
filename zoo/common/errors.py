"""User-facing errors.

A :class:`ZooError` carries one line that names the file or argument at fault and what was
expected. The command-line entry points print it as ``error: <message>`` and exit with status 2,
without a traceback and without touching anything already written.
"""

from __future__ import annotations


class ZooError(Exception):
    """A bad input from the user (path, argument, checkpoint, data), explained in one line."""
