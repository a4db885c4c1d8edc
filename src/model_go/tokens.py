"""Token estimates. Only for reservations and for the rare reply that reports no usage (marked as
an estimate on the usage row): billing uses the provider's own counts whenever it sends them."""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4


def text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN) if chars > 0 else 0


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(part) for part in value)
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_audio", "image"):
            return 85 * CHARS_PER_TOKEN  # OpenAI's base cost of a low-detail image
        return sum(_text_chars(v) for k, v in value.items() if k not in ("type", "role"))
    return 0


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A typical-case estimate of the prompt's tokens (about four characters a token)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        chars = sum(_text_chars(m) for m in messages)
        return text_tokens(chars) + PER_MESSAGE_OVERHEAD * len(messages) + 3
    return text_tokens(_text_chars(body.get("input")))
