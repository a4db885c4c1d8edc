"""Canonical `chat.completion.chunk` payloads in, the Responses event stream out:

    response.created, response.in_progress,
    per output item: response.output_item.added, then
        a message:   response.content_part.added, response.output_text.delta…, response.output_text.done,
                     response.content_part.done
        a reasoning: response.reasoning_summary_part.added, response.reasoning_summary_text.delta…,
                     response.reasoning_summary_text.done, response.reasoning_summary_part.done
        a call:      response.function_call_arguments.delta…, response.function_call_arguments.done
    response.output_item.done, and last response.completed (or .incomplete), or response.failed.

Every event carries a sequence_number counting from 0. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from model_go.dialects.canonical import first_choice, text_of
from model_go.dialects.responses import reply
from model_go.errors import GatewayError
from model_go.wire.canonical import Usage, as_dict


class Events:
    """Numbers and frames the events of one stream."""

    def __init__(self) -> None:
        self.sequence = 0
        self.out: list[bytes] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        payload = orjson.dumps({"type": kind, "sequence_number": self.sequence, **data})
        self.sequence += 1
        self.out.append(b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n")

    def take(self) -> bytes:
        out, self.out = b"".join(self.out), []
        return out


def failed_event(events: Events, response: dict[str, Any], exc: GatewayError) -> bytes:
    """The stream's last event when it broke: response.failed, with our own error."""
    reply.failure(response, exc)
    events.emit("response.failed", {"response": response})
    return events.take()


class _Item:
    """An output item being streamed: its index, its item, and its text so far."""

    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.item = item
        self.text: list[str] = []


class ResponseStream:
    """The Egress of a translated stream (the first choice)."""

    def __init__(self, response_id: str, model: str, echo: dict[str, Any]) -> None:
        self.prefix = response_id.removeprefix("resp_")
        self.response = reply.skeleton(response_id, model, echo, "in_progress")
        self.events = Events()
        self.started = False
        self.output: list[dict[str, Any]] = []
        self.open: _Item | None = None  # the message or reasoning item being written
        self.calls: dict[int, _Item] = {}  # canonical tool call index -> its item, open until the end
        self.finish_reason: str | None = None

    def feed(self, payloads: list[bytes]) -> bytes:
        if not self.started:
            self.started = True
            self.events.emit("response.created", {"response": self.response})
            self.events.emit("response.in_progress", {"response": self.response})
        for delta, finish in first_choice(payloads):
            self._delta(delta)
            if finish:
                self.finish_reason = finish
        return self.events.take()

    def end(self, usage: Usage, error: GatewayError | None, cost_usd: float) -> bytes:
        head = self.feed([]) if not self.started else b""
        response = self.response
        if error is not None:
            response["output"] = self.output
            return head + failed_event(self.events, response, error)
        self._close()
        for call in self.calls.values():
            self._close_call(call)
        self.calls = {}
        response["output"] = [item for item in self.output if item]
        reply.finish(response, self.finish_reason)
        response["usage"] = {**reply.usage_json(usage), "cost": cost_usd}
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        self.events.emit(kind, {"response": response})
        return head + self.events.take()

    # -- items ----------------------------------------------------------------------------------

    def _add(self, item: dict[str, Any]) -> _Item:
        index = len(self.output)
        self.output.append(item)
        self.events.emit("response.output_item.added", {"output_index": index, "item": item})
        return _Item(index, item)

    def _done(self, open_item: _Item, item: dict[str, Any]) -> None:
        self.output[open_item.index] = item
        self.events.emit("response.output_item.done", {"output_index": open_item.index, "item": item})

    def _where(self, open_item: _Item) -> dict[str, Any]:
        return {"item_id": open_item.item["id"], "output_index": open_item.index}

    def _text(self, kind: str, text: str) -> None:
        if self.open is None or self.open.item["type"] != kind:
            self._close()
            n = len(self.output)
            if kind == "message":
                self.open = self._add(reply.message_item(f"msg_{self.prefix}_{n}", "", "in_progress"))
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                self.events.emit(
                    "response.content_part.added",
                    {**self._where(self.open), "content_index": 0, "part": part},
                )
            else:
                self.open = self._add({"id": f"rs_{self.prefix}_{n}", "type": "reasoning", "summary": []})
                part = {"type": "summary_text", "text": ""}
                self.events.emit(
                    "response.reasoning_summary_part.added",
                    {**self._where(self.open), "summary_index": 0, "part": part},
                )
        open_item = self.open
        open_item.text.append(text)
        if kind == "message":
            data = {**self._where(open_item), "content_index": 0, "delta": text, "logprobs": []}
            self.events.emit("response.output_text.delta", data)
        else:
            data = {**self._where(open_item), "summary_index": 0, "delta": text}
            self.events.emit("response.reasoning_summary_text.delta", data)

    def _close(self) -> None:
        open_item, self.open = self.open, None
        if open_item is None:
            return
        text, where = "".join(open_item.text), self._where(open_item)
        if open_item.item["type"] == "message":
            self.events.emit(
                "response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []}
            )
            item = reply.message_item(open_item.item["id"], text)
            part = item["content"][0]
            self.events.emit("response.content_part.done", {**where, "content_index": 0, "part": part})
        else:
            self.events.emit(
                "response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text}
            )
            part = {"type": "summary_text", "text": text}
            self.events.emit(
                "response.reasoning_summary_part.done", {**where, "summary_index": 0, "part": part}
            )
            item = reply.reasoning_item(open_item.item["id"], text)
        self._done(open_item, item)

    def _close_call(self, call: _Item) -> None:
        arguments, item = "".join(call.text), call.item
        self.events.emit(
            "response.function_call_arguments.done",
            {**self._where(call), "name": item["name"], "arguments": arguments},
        )
        self._done(call, reply.call_item(item["id"], item["call_id"], item["name"], arguments))

    def _delta(self, delta: dict[str, Any]) -> None:
        reasoning = text_of(delta.get("reasoning_content") or delta.get("reasoning"))
        if reasoning:
            self._text("reasoning", reasoning)
        text = text_of(delta.get("content")) or text_of(delta.get("refusal"))
        if text:
            self._text("message", text)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call_delta(call)

    def _call_delta(self, call: dict[str, Any]) -> None:
        position = call.get("index", 0) if isinstance(call.get("index"), int) else 0
        function = as_dict(call.get("function"))
        if position not in self.calls:
            self._close()
            n = len(self.output)
            call_id = str(call.get("id") or f"call_{self.prefix}_{position}")
            item = reply.call_item(
                f"fc_{self.prefix}_{n}", call_id, str(function.get("name") or ""), "", "in_progress"
            )
            self.calls[position] = self._add(item)
        open_call = self.calls[position]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            open_call.text.append(arguments)
            self.events.emit(
                "response.function_call_arguments.delta", {**self._where(open_call), "delta": arguments}
            )
