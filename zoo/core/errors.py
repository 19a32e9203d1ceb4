"""User-facing errors.

A :class:`ZooError` carries one line that names the file or argument at fault and what was
expected. The command-line entry points print it as ``error: <message>`` and exit with status 2,
without a traceback and without touching anything already written.
"""

from __future__ import annotations


class ZooError(Exception):
    """A bad input from the user (path, argument, checkpoint, data), explained in one line."""


def one_line(err: ZooError) -> str:
    """The error's message as one line (a ZooError re-raised from a DataLoader worker carries the
    worker's traceback; its last line holds the original message)."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ZooError"):
        return lines[-1].split("ZooError: ", 1)[-1]
    return lines[0] if lines else type(err).__name__


def run_cli(fn, *args) -> int:
    """Call ``fn(*args)``; a :class:`ZooError` becomes ``error: <one line>`` on stderr and exit 2."""
    import sys

    try:
        fn(*args)
    except ZooError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0
