"""The reservation's bounds: media parts by the catalogue, not their JSON size; the context cap;
what a balance can pay for."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from model_go.billing.catalogue import ModelSpec, shipped
from model_go.billing.money import request_cost
from model_go.billing.reservation import affordable_output, output_bound, prompt_bound

SPEC = ModelSpec(context_length=128_000, max_output_tokens=16_384, image_tokens=1_445)


def _bound(body: dict[str, Any], spec: ModelSpec = SPEC) -> int:
    return prompt_bound(body, len(orjson.dumps(body)), spec)


def test_a_bare_image_part_counts_as_the_catalogue_maximum_not_its_21_bytes() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    raw = len(orjson.dumps(body))
    assert _bound(body) == raw - len(b'{"type":"image_url"}') + 1_445
    assert _bound(body) > 1_445


def test_a_large_inline_image_counts_as_the_maximum_not_its_bytes() -> None:
    data = "data:image/png;base64," + "A" * 2_000_000
    part = {"type": "image_url", "image_url": {"url": data}}
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}],
    }
    assert 1_445 < _bound(body) < 1_445 + 200


def test_anthropic_images_and_documents_in_messages_and_system() -> None:
    doc_by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    inline_doc = {"type": "document", "source": {"type": "base64", "data": "J" * 5_000}}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 90_000}}
    by_url = {"model": "claude", "messages": [{"role": "user", "content": [doc_by_url]}]}
    assert _bound(by_url) == SPEC.context_length  # no size to go by: the context window
    inline = {"model": "claude", "system": [inline_doc], "messages": [{"role": "user", "content": [image]}]}
    raw = len(orjson.dumps(inline))
    assert _bound(inline) == raw - len(orjson.dumps(image)) + 1_445  # the document by its own bytes


def test_gemini_images_and_files_in_contents() -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "A" * 2_000_000}}
    audio = {"inlineData": {"mimeType": "audio/mp3", "data": "B" * 3_000}}
    remote = {"fileData": {"mimeType": "video/mp4", "fileUri": "https://x.test/v.mp4"}}
    body = {"contents": [{"role": "user", "parts": [{"text": "see"}, image]}]}
    assert 1_445 < _bound(body) < 1_445 + 200  # the image's catalogue bound, not its 2 MB
    with_audio = {"contents": [{"role": "user", "parts": [{"text": "hear"}, audio]}]}
    assert _bound(with_audio) >= 3_000  # inline bytes other than images: their size
    assert _bound({"contents": [{"parts": [remote]}]}) == SPEC.context_length  # unknown size


def test_the_bound_never_exceeds_the_context_window() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 500_000}]}
    assert _bound(body) == 128_000
    assert _bound(body, shipped().default) == len(orjson.dumps(body))


@given(st.text(max_size=300), st.integers(min_value=0, max_value=3))
def test_text_is_bounded_by_its_bytes(text: str, images: int) -> None:
    content: list[dict[str, str]] = [{"type": "text", "text": text}] + [{"type": "image_url"}] * images
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    bound = _bound(body, ModelSpec(10**9, 1, 1_445))
    assert bound >= len(text.encode()) + images * 1_445


def test_output_bound_is_the_clients_cap_else_the_models_max() -> None:
    assert output_bound(None, SPEC) == 16_384
    assert output_bound(100, SPEC) == 100
    assert output_bound(20_000, SPEC) == 20_000  # the upstream refuses it, unbilled


@given(
    available=st.integers(min_value=0, max_value=10**9),
    prompt=st.integers(min_value=0, max_value=10**6),
    input_price=st.integers(min_value=0, max_value=100_000_000),
    output_price=st.integers(min_value=1, max_value=100_000_000),
    choices=st.integers(min_value=1, max_value=8),
)
def test_the_affordable_output_is_the_largest_that_the_balance_pays_for(
    available: int, prompt: int, input_price: int, output_price: int, choices: int
) -> None:
    out = affordable_output(
        available, prompt_scaled=prompt * input_price, output_per_1m=output_price, choices=choices
    )

    def cost(tokens: int) -> int:
        return request_cost(
            prompt_tokens=prompt,
            completion_tokens=tokens * choices,
            cached_tokens=0,
            input_per_1m=input_price,
            output_per_1m=output_price,
            cached_input_per_1m=0,
        )

    if out > 0:
        assert cost(out) <= available
    assert cost(out + 1) > available or (out == 0 and cost(0) > available)


def test_shipped_catalogue_finds_dated_and_prefixed_names() -> None:
    catalogue = shipped()
    assert catalogue.lookup("gpt-4o-2024-08-06").max_output_tokens == 16_384
    assert catalogue.lookup("gpt-4o-mini-2024-07-18").image_tokens == 48_169
    assert catalogue.lookup("openai/gpt-4.1-nano").context_length == 1_047_576
    assert catalogue.lookup("claude-sonnet-4-5-20250929").max_output_tokens == 64_000
    assert catalogue.lookup("gpt-4oo") == catalogue.default  # a prefix must end at a separator
    assert catalogue.lookup("my-alias", "gpt-4o").max_output_tokens == 16_384  # the upstream's name


def test_context_the_upstream_stored_is_bounded_by_the_context_window() -> None:
    """A Responses request naming an earlier response, a conversation, a stored prompt or a stored
    item makes the upstream add tokens the bytes do not show."""
    plain = {"model": "m", "input": "more"}
    assert _bound(plain) < 100
    for extra in ({"previous_response_id": "r"}, {"conversation": "c"}, {"prompt": {"id": "p"}}):
        assert _bound({**plain, **extra}) == SPEC.context_length
    referenced = {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}
    assert _bound(referenced) == SPEC.context_length
