"""Which modules a process imported, read from its `-X importtime` trace (PYTHONPROFILEIMPORTTIME=1):
CPython writes one stderr line per module as it imports it, lazily imported ones included, so a
running server can be asked afterwards without any debug hook of its own. An attempt that failed
(`try: import nt` on Linux) has its line too: a name in the trace is a module that was imported or
was tried and is not installed."""

from __future__ import annotations

import re

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$")
HEADER = "import time: self [us]"


def imported_modules(log: str) -> list[str]:
    """The modules the last interpreter in `log` imported, in the order it began them. `model-go
    serve` execs the server, whose interpreter prints the header again: its lines follow the last one."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(HEADER)]
    first = starts[-1] if starts else 0
    return [m.group(1) for line in lines[first:] if (m := IMPORT_LINE.match(line))]


def interpreters(log: str) -> int:
    """How many interpreters wrote to `log` with the trace on."""
    return sum(1 for line in log.splitlines() if line.startswith(HEADER))
