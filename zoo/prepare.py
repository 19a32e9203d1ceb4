"""``python -m zoo.prepare <model> [options]``: a model's data-preparation command.

Each registry entry may name one (``ZooEntry.prepare``); for MCC-KD it filters teacher rationales
by answer correctness, de-duplicates them and keeps K diverse ones (``python -m zoo.prepare mcc_kd
--help``).
"""

from __future__ import annotations

import sys

from zoo.core import registry
from zoo.core.errors import ZooError, run_cli


def usage() -> str:
    lines = [f"  {e.name:<8} {e.summary}" for e in registry.entries() if e.prepare]
    return ("usage: python -m zoo.prepare MODEL [options]   (python -m zoo.prepare MODEL --help)\n\n"
            "Prepare a model's training data from local files.\n\nmodels with a preparation step:\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0

    def go() -> None:
        entry = registry.get(argv[0])
        if not entry.prepare:
            raise ZooError(f"model {entry.name!r} has no preparation step; models with one: "
                           + ", ".join(e.name for e in registry.entries() if e.prepare))
        rc = registry.import_string(entry.prepare)(argv[1:])
        if rc:
            raise SystemExit(rc)

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
