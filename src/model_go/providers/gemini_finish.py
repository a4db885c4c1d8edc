"""Gemini's finish reasons, each read for what it means: a natural end, the output cap, a filter,
or a failure of the model that no client may take for an answer.

    STOP                                     -> stop (tool_calls when the candidate called a tool)
    MAX_TOKENS, CONTINUATION                 -> length
    SAFETY, RECITATION, LANGUAGE, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY,
    IMAGE_PROHIBITED_CONTENT, IMAGE_RECITATION, ESCALATION, PUP_LIMITED_DISABLED, MODEL_ARMOR
                                             -> content_filter
    MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS, MALFORMED_RESPONSE,
    OTHER, IMAGE_OTHER, NO_IMAGE, and any reason this table does not know yet
                                             -> a 502 upstream error naming the reason
    MISSING_THOUGHT_SIGNATURE                -> a 400: the request's history lost a signature
    FINISH_REASON_UNSPECIFIED, absent        -> not finished (a stream goes on)

A failed candidate often carries no content at all (a malformed call is dropped by Gemini), so
answering it as `stop` would hand the client an empty success. Pure: no I/O.
"""

from __future__ import annotations

from model_go.errors import GatewayError, InvalidRequest, UpstreamError

STOP, LENGTH, FILTERED = "stop", "length", "content_filter"
FINISHED = {
    "STOP": STOP,
    "MAX_TOKENS": LENGTH,
    "CONTINUATION": LENGTH,
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "LANGUAGE",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "ESCALATION",
            "PUP_LIMITED_DISABLED",
            "MODEL_ARMOR",
        ),
        FILTERED,
    ),
}
# what the model did wrong, in the client's error message
FAILURES = {
    "MALFORMED_FUNCTION_CALL": "the model generated a function call that could not be parsed",
    "UNEXPECTED_TOOL_CALL": "the model called a tool that was not declared or not enabled",
    "TOO_MANY_TOOL_CALLS": "the model made too many tool calls in one request",
    "MALFORMED_RESPONSE": "the model's response was malformed",
    "OTHER": "the model stopped for an unspecified reason",
    "IMAGE_OTHER": "the image generation stopped for an unspecified reason",
    "NO_IMAGE": "the model was expected to generate an image but did not",
}
NOT_FINISHED = "FINISH_REASON_UNSPECIFIED"
# the model's own failure: another channel may do better, but the channel itself is healthy
MODEL_FAILED = "upstream_model_failed"


def failure(reason: str) -> GatewayError:
    """The error a candidate that ended with `reason` (not in FINISHED) is answered with."""
    if reason == "MISSING_THOUGHT_SIGNATURE":
        return InvalidRequest(
            "The upstream model refused the conversation: a function call in its history lost the"
            " thought signature the model gave it (finish reason MISSING_THOUGHT_SIGNATURE).",
            code="upstream_bad_request",
        )
    known = FAILURES.get(reason)
    label = reason if known is not None else "unknown"
    what = known or "the model stopped for a reason model-go does not know"
    return UpstreamError(f"The upstream model failed: {what} (finish reason {label}).", code=MODEL_FAILED)


def finish_reason(reason: object, called_tools: bool) -> str | GatewayError | None:
    """The canonical finish_reason of a Gemini finishReason, its error, or None while unfinished."""
    if not isinstance(reason, str) or reason == NOT_FINISHED:
        return None
    mapped = FINISHED.get(reason)
    if mapped is None:
        return failure(reason)
    return "tool_calls" if mapped == STOP and called_tools else mapped
