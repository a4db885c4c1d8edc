"""Server-sent events: split an upstream byte stream into `data:` payloads, and frame ours."""

from __future__ import annotations

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class SSEDecoder:
    """Incremental decoder. Handles \\n, \\r\\n and events split across network reads."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
            if buffer.endswith(b"\r"):  # a \r\n split across two reads
                self._buffer = buffer
                return []
            buffer = buffer.replace(b"\r", b"\n")
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        payloads: list[bytes] = []
        for event in events:
            # the common case, one `data: {...}` line per event, without a per-line split
            if event.startswith(b"data: ") and b"\n" not in event:
                payloads.append(event[6:])
                continue
            data_lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data_lines:
                payloads.append(b"\n".join(data_lines))
        return payloads

    def flush(self) -> list[bytes]:
        """The upstream closed: a final event without its blank line still counts."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return []
        return self.feed(rest + b"\n\n")
