"""Reading the canonical (OpenAI chat) format as every dialect does: sampling numbers on the way in,
message text and first-choice stream deltas on the way out. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from model_go.errors import InvalidRequest

SAMPLING = ("temperature", "top_p")


def copy_numbers(body: dict[str, Any], out: dict[str, Any], names: tuple[str, ...] = SAMPLING) -> None:
    """The numeric fields `names` of the client's body, checked, into the canonical body."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"'{name}' must be a number.", param=name)
        out[name] = value


def copy_stream(body: dict[str, Any], out: dict[str, Any]) -> None:
    """The client's `stream` flag, checked, into the canonical body (absent when false)."""
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    if stream:
        out["stream"] = True


def text_of(value: Any) -> str:
    """A message's (or delta's) text: a string, or the text of content parts (some vendors answer
    with parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def first_choice(payloads: list[bytes]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(delta, finish_reason) of the first choice in each canonical chunk; unreadable chunks skipped."""
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in (chunk.get("choices") or ()) if isinstance(chunk, dict) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            finish = choice.get("finish_reason")
            yield (delta if isinstance(delta, dict) else {}), (str(finish) if finish else None)
