"""The canonical request and usage types every layer shares (the OpenAI chat format is canonical)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens: read from a prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to a prompt cache (Anthropic bills these higher)


class ChatRequest(NamedTuple):
    """What the relay decides with, read from a validated chat completions body (which the Call
    carries). A tuple too: unpacks as (model, stream, wants_usage, max_output, n)."""

    model: str
    stream: bool
    wants_usage: bool  # the client asked for the usage chunk (stream_options.include_usage)
    max_output: int | None  # max_completion_tokens or max_tokens, when the client set one
    n: int


@dataclass
class Call:
    """One client request in canonical form, as handed to a translator."""

    body: dict[str, Any]
    raw: bytes
    model: str  # the public model name the client asked for
    upstream_model: str
    stream: bool = False
    client_wants_usage: bool = False
    # the most output tokens per choice the upstream may produce: what the balance reserved. Every
    # provider sends it in its own field, whatever the client asked for (None: embeddings)
    output_cap: int | None = None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def str_or(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default
