"""What a request may cost at most, decided before it reaches an upstream.

A reservation is the prompt's bound plus the output the request may produce. The prompt's bound is
taken from the bytes that go upstream (a byte-level BPE token covers at least one byte), except
that a media part counts as the catalogue's most tokens for it, not as its JSON size: a 21-byte
`{"type": "image_url"}` can cost 85+ tokens, and a 2 MB base64 image far fewer than 2M. A part that
points at a document or audio elsewhere has no size to go by: it is bounded by the context window.
No prompt is billed beyond the model's context window, so that caps the whole bound too; it is also
the bound of a Responses request that makes the upstream add context it stored (previous_response_id,
conversation, a stored prompt, item_reference items).

The output side is the client's max_tokens, else the model's max output; model-go sends the
upstream exactly that cap, so an upstream that honours caps cannot cost more than was reserved.
When the balance cannot pay for the whole cap, `affordable_output` says how many output tokens it
can pay for; the relay reserves that and caps the request there (finish_reason then says length).
"""

from __future__ import annotations

from typing import Any

import orjson

from model_go.billing.catalogue import ModelSpec
from model_go.billing.money import TOKENS_PER_PRICE_UNIT

IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})
OTHER_MEDIA_PARTS = frozenset({"input_audio", "file", "document", "input_file", "audio"})
# inline payload fields: a part that carries its bytes is bounded by them
_INLINE_FIELDS = ("data", "file_data", "input_audio", "source")


# A Responses request naming context the upstream stored (an earlier response, a conversation, a
# stored prompt) makes the upstream prepend it: the bytes sent say nothing of its size.
STORED_CONTEXT = ("previous_response_id", "conversation", "prompt")
STORED_PARTS = frozenset({"item_reference"})


def prompt_bound(body: dict[str, Any], raw_size: int, spec: ModelSpec) -> int:
    """Worst-case prompt tokens of a request whose upstream bytes are `raw_size` long."""
    if "input" in body and any(body.get(name) is not None for name in STORED_CONTEXT):
        return spec.context_length
    turns = body.get("messages") or body.get("input") or body.get("contents")  # OpenAI, Gemini
    media_bytes, media_tokens = _media(turns, spec, 0)
    system = body.get("system")  # Anthropic's top-level system blocks may hold documents too
    if isinstance(system, list):
        more_bytes, more_tokens = _media(system, spec, 0)
        media_bytes, media_tokens = media_bytes + more_bytes, media_tokens + more_tokens
    return min(max(raw_size - media_bytes, 0) + media_tokens, spec.context_length)


def _media(value: Any, spec: ModelSpec, depth: int) -> tuple[int, int]:
    """(JSON bytes of the media parts found, their token bound)."""
    if depth > 64:
        return 0, 0
    if isinstance(value, list):
        found_bytes = found_tokens = 0
        for item in value:
            item_bytes, item_tokens = _media(item, spec, depth + 1)
            found_bytes += item_bytes
            found_tokens += item_tokens
        return found_bytes, found_tokens
    if not isinstance(value, dict):
        return 0, 0
    if "inlineData" in value or "fileData" in value:
        return _gemini_media(value, spec)
    kind = value.get("type")
    if kind in IMAGE_PARTS:
        return _json_size(value), spec.image_tokens
    if kind in STORED_PARTS:
        return _json_size(value), spec.context_length
    if kind in OTHER_MEDIA_PARTS:
        size = _json_size(value)
        inline = any(_carries_bytes(value.get(name)) for name in _INLINE_FIELDS)
        return size, (size if inline else spec.context_length)
    found_bytes = found_tokens = 0
    for item in value.values():
        if isinstance(item, list | dict):
            item_bytes, item_tokens = _media(item, spec, depth + 1)
            found_bytes += item_bytes
            found_tokens += item_tokens
    return found_bytes, found_tokens


def _gemini_media(part: dict[str, Any], spec: ModelSpec) -> tuple[int, int]:
    """A Gemini part: an image counts as the catalogue's image bound, other inline bytes as their
    size, a file elsewhere (fileData) as the context window."""
    inline = part.get("inlineData")
    media = inline if isinstance(inline, dict) else part.get("fileData")
    mime = media.get("mimeType") if isinstance(media, dict) else None
    size = _json_size(part)
    if isinstance(mime, str) and mime.startswith("image/"):
        return size, spec.image_tokens
    return size, (size if isinstance(inline, dict) else spec.context_length)


# the bytes an output cap adds to a body on its way upstream: `,"max_completion_tokens":2147483647`
CAP_BYTES = 40
# every media part names its type with one of these prefixes; a body without any holds only text
_MEDIA_MARKS = (b'"image', b'"input_', b'"file', b'"document', b'"audio')


def may_hold_media(raw: bytes) -> bool:
    """False when the body certainly has no media part (the common case: a byte scan, no walk)."""
    return any(mark in raw for mark in _MEDIA_MARKS)


def count_images(value: Any, depth: int = 0) -> int:
    """Image parts anywhere in a request body (a price may charge per image)."""
    if depth > 64:
        return 0
    if isinstance(value, list):
        return sum(count_images(item, depth + 1) for item in value)
    if not isinstance(value, dict):
        return 0
    if value.get("type") in IMAGE_PARTS:
        return 1
    return sum(count_images(item, depth + 1) for item in value.values() if isinstance(item, list | dict))


def _carries_bytes(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) > 256 and not value.startswith(("http://", "https://"))
    if isinstance(value, dict):
        return any(_carries_bytes(v) for k, v in value.items() if k in ("data", "file_data"))
    return False


def _json_size(value: Any) -> int:
    """A lower bound on the part's size in the request: its compact JSON (the raw may have spaces)."""
    return len(orjson.dumps(value))


def output_bound(requested: int | None, spec: ModelSpec) -> int:
    """Output tokens per choice to reserve and to send upstream as the cap: the client's own cap
    (an upstream refuses one beyond the model's limit, unbilled), else the model's max output."""
    return requested if requested is not None else spec.max_output_tokens


def affordable_output(available_micros: int, *, prompt_scaled: int, output_per_1m: int, choices: int) -> int:
    """Most output tokens per choice that `available_micros` pays for, after a prompt that costs
    `prompt_scaled` (micro-dollars * 1M, before rounding). Costs round up once per request, so
    ceil((prompt + out * price) / 1M) ≤ available ⇔ prompt + out * price ≤ available * 1M."""
    room = available_micros * TOKENS_PER_PRICE_UNIT - prompt_scaled
    if room <= 0:
        return 0
    if output_per_1m <= 0:
        return 2**31  # free output: the balance is no limit
    return room // output_per_1m // max(choices, 1)
