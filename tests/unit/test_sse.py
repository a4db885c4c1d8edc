"""SSE decoding across arbitrary network splits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model_go.wire.sse import SSEDecoder

STREAM = (
    b': comment\n\ndata: {"a": 1}\n\n'
    b'event: message\r\ndata: {"b": 2}\r\n\r\n'
    b"data: line1\ndata: line2\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b'{"b": 2}', b"line1\nline2", b"[DONE]"]


def test_whole_stream() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    decoder = SSEDecoder()
    events: list[bytes] = []
    points = sorted(set(cuts))
    start = 0
    for point in [*points, len(STREAM)]:
        events.extend(decoder.feed(STREAM[start:point]))
        start = point
    events.extend(decoder.flush())
    assert events == EXPECTED


def test_final_event_without_blank_line_is_kept_on_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x": 1}') == []
    assert decoder.flush() == [b'{"x": 1}']
