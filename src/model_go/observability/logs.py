"""Log lines as JSON (one object a line, for a log shipper) or as text (for a terminal).

`MODELGO_LOG_FORMAT=json|text`; unset, JSON when stderr is not a terminal. Lines are buffered and
written four times a second (a warning or worse at once): see BufferedStderrHandler. A record may carry
`extra={"fields": {...}}`: the JSON line holds those fields beside the message, the text line shows
the message alone. The relay's per-request line is built that way (relay/pipeline.py), and it never
holds a prompt, a reply, a key or a cookie: only ids, counts, the model and the status.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson

JSON, TEXT = "json", "text"
ACCESS = "access"  # the LogRecord attribute that marks a per-request line
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def resolve_format(configured: str | None, stream: Any = None) -> str:
    """The format in effect: the configured one, else JSON unless the stream is a terminal."""
    if configured:
        return configured
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return TEXT if isatty is not None and isatty() else JSON


def configure(level: str, log_format: str | None, process: dict[str, int] | None = None) -> None:
    """Log to stderr at `level` in `log_format`. `process` (e.g. {"worker": 2, "pid": 4711}) is set on
    every line: a JSON field each, a `[worker 2 pid 4711]` tag in text (`serve --workers N`)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # documented logging switches: skip the caller, thread and process lookups on every record
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStderrHandler()
    chosen = resolve_format(log_format, sys.stderr)
    if chosen == JSON:
        handler.setFormatter(JsonFormatter(process))
    else:
        tag = " ".join(f"{name} {value}" for name, value in (process or {}).items())
        text_format = TEXT_FORMAT.replace(" %(name)s", f" [{tag}] %(name)s") if tag else TEXT_FORMAT
        handler.setFormatter(SecondCachingFormatter(text_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to stderr through a 64 KiB buffer. The relay's per-request lines (logged with
    `extra={ACCESS: True, ...}`) wait for a flush every FLUSH_SECONDS by a thread of its own: one
    write() a flush, not one a request (that syscall was a tenth of a relayed request's CPU); every
    other line is written at once, and takes the waiting ones with it. A SIGKILL loses at most the
    last FLUSH_SECONDS of request lines; usage rows, not log lines, are the record of what was served."""

    FLUSH_SECONDS = 0.25

    def __init__(self) -> None:
        stream = open(sys.stderr.fileno(), "w", buffering=64 * 1024, closefd=False, encoding="utf-8")  # noqa: SIM115
        super().__init__(stream)
        self._stop = threading.Event()
        threading.Thread(target=self._flush_loop, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            if not getattr(record, ACCESS, False):
                self.stream.flush()  # only the per-request lines wait for the flush thread
        except Exception:
            self.handleError(record)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


class SecondCachingFormatter(logging.Formatter):
    """The standard text format, with the date and time rendered once a second instead of per record
    (time.strftime was a fifth of an access-log line's cost)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", ...process, "msg", ...fields, "exc"?}: one line, UTC timestamps to
    the ms; `process` names the worker process that wrote it, when there are several."""

    _second = -1
    _stamp = ""

    def __init__(self, process: dict[str, int] | None = None) -> None:
        super().__init__()
        self.process = dict(process or {})

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        line: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            **self.process,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            # tracebacks name code and types; request data lives only in local variables
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class Occasional:
    """A warning logged at most once every `seconds`: a dependency that stays down (Redis, say) is
    reported, not repeated on every request."""

    def __init__(self, logger: logging.Logger, message: str, seconds: float = 10.0) -> None:
        self.logger, self.message, self.seconds = logger, message, seconds
        self._last = -seconds

    def __call__(self, *args: object) -> None:
        """Log the message (formatted with `args`, as logging does), unless it was logged lately."""
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._last = now
            self.logger.warning(self.message, *args)
