"""Google Gemini API upstream: OpenAI chat and embeddings requests in, generateContent /
streamGenerateContent (SSE) / embedContent / batchEmbedContents out, and back again."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import struct
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from model_go.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from model_go.providers import canonical as c
from model_go.providers import errors
from model_go.providers import gemini_finish as finishes
from model_go.providers.base import Channel, UpstreamRequest
from model_go.tokens import estimate_prompt_tokens
from model_go.wire.canonical import Call, Usage, as_dict, as_list, int_or, str_or

TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
# Gemini's function calls carry no id (and Gemini 3 wants each call's thoughtSignature back), so the
# OpenAI tool call id we hand out is synthesized, stable, and carries the signature with it.
SYNTH_PREFIX = "call_mg"
SIGNATURE_SEP = "__ts__"


# -- tool call ids -------------------------------------------------------------------------------


def encode_call_id(part: dict[str, Any], response_id: str, candidate: int, position: int) -> str:
    fn = as_dict(part.get("functionCall"))
    upstream_id = fn.get("id")
    if isinstance(upstream_id, str) and upstream_id:
        call_id = upstream_id
    else:
        seed = orjson.dumps(
            [response_id, candidate, position, fn.get("name"), fn.get("args")], option=orjson.OPT_SORT_KEYS
        )
        call_id = SYNTH_PREFIX + hashlib.sha256(seed).hexdigest()[:24]
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        # URL-safe alphabet keeps the id within [A-Za-z0-9_-] for clients that check ids
        call_id += SIGNATURE_SEP + signature.replace("+", "-").replace("/", "_").rstrip("=")
    return call_id


def decode_call_id(call_id: str) -> tuple[str | None, str | None]:
    """(Gemini's own call id or None, thought signature or None) from an id we handed out."""
    base, _, signature = call_id.partition(SIGNATURE_SEP)
    upstream_id = None if base.startswith(SYNTH_PREFIX) else base or None
    if not signature:
        return upstream_id, None
    signature = signature.replace("-", "+").replace("_", "/")
    return upstream_id, signature + "=" * (-len(signature) % 4)


# -- request: OpenAI chat -> generateContent -----------------------------------------------------


def _media_part(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        mime, data = c.parse_data_url(url, param)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if not c.is_web_url(url):
        raise InvalidRequest(f"'{param}' must be an http(s) or data URL.", param=param)
    file_data: dict[str, Any] = {"fileUri": url}  # Gemini fetches it; we never do
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0], strict=False)
    if guessed:
        file_data = {"mimeType": guessed, "fileUri": url}
    return {"fileData": file_data}


def _user_parts(content: Any, param: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(c.content_parts(content, param)):
        here = f"{param}[{index}]"
        kind = part.get("type")
        if kind in ("text", "input_text"):
            parts.append({"text": c.part_text(part, here)})
        elif kind == "image_url":
            parts.append(_media_part(c.image_url(part, here), f"{here}.image_url.url"))
        elif kind == "input_audio":
            audio = as_dict(part.get("input_audio"))
            if not isinstance(audio.get("data"), str) or audio.get("format") not in ("wav", "mp3"):
                raise InvalidRequest(f"'{here}.input_audio' needs data and a wav or mp3 format.", param=here)
            parts.append({"inlineData": {"mimeType": f"audio/{audio['format']}", "data": audio["data"]}})
        elif kind == "file":
            file_data = as_dict(part.get("file")).get("file_data")
            if not isinstance(file_data, str):
                raise InvalidRequest(f"'{here}.file' must carry file_data as a data URL.", param=here)
            parts.append(_media_part(file_data, f"{here}.file.file_data"))
        else:
            raise InvalidRequest(
                f"'{here}': content of type {kind!r} is not supported by this model.", param=here
            )
    return parts


def _model_parts(message: dict[str, Any], param: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(c.content_parts(message.get("content"), f"{param}.content")):
        text = part.get("text") if part.get("type") in ("text", "output_text") else part.get("refusal")
        if isinstance(text, str) and text:
            parts.append({"text": text})
        elif part.get("type") not in ("text", "output_text", "refusal"):
            here = f"{param}.content[{index}]"
            raise InvalidRequest(f"'{here}' must be a text part.", param=here)
    for index, call in enumerate(as_list(message.get("tool_calls"))):
        here = f"{param}.tool_calls[{index}]"
        fn = as_dict(as_dict(call).get("function"))
        call_id, name = as_dict(call).get("id"), fn.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise InvalidRequest(f"'{here}' needs an id and a function name.", param=here)
        names[call_id] = name
        upstream_id, signature = decode_call_id(call_id)
        function_call: dict[str, Any] = {"name": name, "args": c.tool_arguments(fn.get("arguments"), here)}
        if upstream_id:
            function_call["id"] = upstream_id
        gemini_part: dict[str, Any] = {"functionCall": function_call}
        if signature:
            gemini_part["thoughtSignature"] = signature
        parts.append(gemini_part)
    return parts


def _function_response(message: dict[str, Any], param: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    name = name or (message.get("name") if isinstance(message.get("name"), str) else None)
    if not isinstance(call_id, str) or not name:
        raise InvalidRequest(
            f"'{param}.tool_call_id' must match a tool call of an earlier assistant message.",
            param=f"{param}.tool_call_id",
        )
    text = c.text_only(message.get("content"), f"{param}.content")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    response: dict[str, Any] = {
        "name": name,
        "response": parsed if isinstance(parsed, dict) else {"result": text},
    }
    upstream_id, _ = decode_call_id(call_id)
    if upstream_id:
        response["id"] = upstream_id
    return {"functionResponse": response}


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, contents). Same-role turns are merged: parallel function
    responses must arrive together in one turn."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the function responses
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.append({"text": c.text_only(message.get("content"), f"{param}.content")})
            continue
        if role == "user":
            parts, turn_role = _user_parts(message.get("content"), f"{param}.content"), "user"
        elif role == "assistant":
            parts, turn_role = _model_parts(message, param, names), "model"
        elif role == "tool":
            parts, turn_role = [_function_response(message, param, names)], "user"
        else:
            raise InvalidRequest(f"'{param}.role' {role!r} is not supported by this model.", param=param)
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn_role, "parts": parts})
    if not contents:
        raise InvalidRequest("'messages' must hold at least one user message.", param="messages")
    return system, contents


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    declarations = []
    for fn in c.function_tools(body):
        declaration: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            declaration["description"] = fn["description"]
        if isinstance(fn.get("parameters"), dict):
            # full JSON Schema is accepted here, unlike the OpenAPI subset of `parameters`
            declaration["parametersJsonSchema"] = fn["parameters"]
        declarations.append(declaration)
    choice = c.tool_choice(body)
    config = None
    if choice is not None and declarations:
        mode, name = choice
        calling: dict[str, Any] = {"mode": TOOL_MODES[mode]}
        if name:
            calling["allowedFunctionNames"] = [name]
        config = {"functionCallingConfig": calling}
    return ([{"functionDeclarations": declarations}] if declarations else []), config


def _generation_config(body: dict[str, Any], output_cap: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = output_cap if output_cap is not None else c.max_output_tokens(body)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = c.number(body, ours)
        if value is not None:
            config[theirs] = value
    if isinstance(body.get("seed"), int):
        config["seed"] = body["seed"]
    stops = c.stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        config["candidateCount"] = n
    fmt = as_dict(body.get("response_format"))
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = as_dict(fmt.get("json_schema")).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    return config


def build_body(channel: Channel, call: Call) -> dict[str, Any]:
    system, contents = convert_messages(call.body["messages"])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools, tool_config = _tools(call.body)
    if tools:
        out["tools"] = tools
    if tool_config:
        out["toolConfig"] = tool_config
    generation = _generation_config(call.body, call.output_cap)
    thinking = channel.config.get("thinking_config")
    if isinstance(thinking, dict):
        generation["thinkingConfig"] = thinking
    if generation:
        out["generationConfig"] = generation
    safety = channel.config.get("safety_settings")
    if isinstance(safety, list):
        out["safetySettings"] = safety
    return out


# -- responses: GenerateContentResponse -> OpenAI chat -------------------------------------------


def usage_from(obj: Any) -> tuple[Usage, int] | None:
    """(canonical usage, thought tokens). Thoughts are billed as output, as Google bills them."""
    if not isinstance(obj, dict) or not isinstance(obj.get("promptTokenCount"), int):
        return None
    thoughts = obj.get("thoughtsTokenCount") or 0
    usage = Usage(
        prompt_tokens=obj["promptTokenCount"] + (obj.get("toolUsePromptTokenCount") or 0),
        completion_tokens=(obj.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=obj.get("cachedContentTokenCount") or 0,
    )
    return usage, thoughts


def prompt_blocked(response: dict[str, Any]) -> InvalidRequest | None:
    reason = as_dict(response.get("promptFeedback")).get("blockReason")
    if not reason or as_list(response.get("candidates")):
        return None
    label = reason if isinstance(reason, str) and reason.isupper() and len(reason) < 40 else "OTHER"
    return InvalidRequest(
        f"The upstream provider's safety filter blocked this prompt (reason: {label}).",
        param="messages",
        code="prompt_blocked",
    )


def candidate_parts(
    candidate: dict[str, Any], index: int, response_id: str, first: int
) -> tuple[str, str, list[Any]]:
    """(text, thought summary, OpenAI tool calls) of one candidate's parts; `first` counts the
    calls this candidate already made earlier in a stream, so ids match the unary answer."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in as_list(as_dict(candidate.get("content")).get("parts")):
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            fn = part["functionCall"]
            call_id = encode_call_id(part, response_id, index, first + len(calls))
            arguments = orjson.dumps(fn.get("args") or {}).decode()
            calls.append(c.tool_call_json(call_id, str(fn.get("name")), arguments))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    return "".join(texts), "".join(thoughts), calls


def finish_reason(candidate: dict[str, Any], called_tools: bool) -> str | None:
    """The candidate's canonical finish_reason, None while unfinished; raises when the model failed."""
    finish = finishes.finish_reason(candidate.get("finishReason"), called_tools)
    if isinstance(finish, GatewayError):
        raise finish
    return finish


def _response_id(response: dict[str, Any]) -> str:
    rid = response.get("responseId")
    return rid if isinstance(rid, str) and rid else ""


def chat_response_json(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    response = c.load_object(body)
    blocked = prompt_blocked(response)
    if blocked is not None:
        raise blocked
    candidates = as_list(response.get("candidates"))
    if not candidates:
        raise c.malformed()
    rid = _response_id(response)
    choices = []
    for position, candidate in enumerate(candidates):
        candidate = as_dict(candidate)
        index = int_or(candidate.get("index"), position)
        text, thoughts, calls = candidate_parts(candidate, index, rid, 0)
        finish = finish_reason(candidate, bool(calls)) or c.FINISH_STOP
        message = c.message_json(text, thoughts, calls)
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    counted = usage_from(response.get("usageMetadata"))
    usage_out = c.usage_json(*counted) if counted else None
    model = str_or(response.get("modelVersion"), call.upstream_model)
    out = c.completion_json("chatcmpl-" + (rid or "gemini"), model, choices, usage_out)
    return out, counted[0] if counted else None


def stream_error(error: Any) -> GatewayError:
    status = as_dict(error).get("status")
    if status == "RESOURCE_EXHAUSTED":
        return RateLimited(
            "The upstream provider is rate limiting requests. Please retry shortly.",
            code="upstream_rate_limited",
        )
    return UpstreamError("The upstream provider failed while streaming the response.")


def stream_event(data: bytes) -> dict[str, Any] | GatewayError | None:
    """One streamGenerateContent event: the response, or the error it reports (never relayed: its
    text is the upstream's), or None when it is no JSON object."""
    try:
        response = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(response, dict):
        return None
    return stream_error(response["error"]) if "error" in response else response


class GeminiStream:
    """streamGenerateContent SSE payloads (each a whole GenerateContentResponse) in, chunks out.
    Gemini sends no [DONE]: the stream is complete once every candidate has a finishReason."""

    def __init__(self, call: Call) -> None:
        n = call.body.get("n")
        self.expected = n if isinstance(n, int) and n > 1 else 1
        self.client_wants_usage = call.client_wants_usage
        self.usage: Usage | None = None
        self.finished = False
        self.completion_chars = 0
        self.error: GatewayError | None = None
        self._writer = c.ChunkWriter("chatcmpl-gemini", call.upstream_model)
        self._started: set[int] = set()
        self._done: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self._usage: tuple[Usage, int] | None = None

    def feed(self, data: bytes) -> list[bytes]:
        response = stream_event(data)
        if not isinstance(response, dict):
            if response is not None:
                self.error, self.finished = response, True
            return []
        blocked = prompt_blocked(response)
        if blocked is not None:
            self.error, self.finished = blocked, True
            return []
        if not self._started:
            rid = _response_id(response)
            self._writer.id = "chatcmpl-" + (rid or "gemini")
            if isinstance(response.get("modelVersion"), str):
                self._writer.model = response["modelVersion"]
        self._usage = usage_from(response.get("usageMetadata")) or self._usage
        out: list[bytes] = []
        for position, candidate in enumerate(as_list(response.get("candidates"))):
            out.extend(self._candidate(as_dict(candidate), position, _response_id(response)))
        if self.error is not None:  # a candidate failed: what it sent so far goes out, then the error
            self.finished = True
            self.usage = self._usage[0] if self._usage is not None else None
            return out
        if len(self._done) >= self.expected:
            self.finished = True
            if self._usage is not None:
                self.usage = self._usage[0]
                if self.client_wants_usage:
                    out.append(self._writer.usage(c.usage_json(*self._usage)))
        return out

    def _candidate(self, candidate: dict[str, Any], position: int, rid: str) -> list[bytes]:
        index = int_or(candidate.get("index"), position)
        first = self._calls.get(index, 0)
        text, thoughts, calls = candidate_parts(candidate, index, rid, first)
        delta: dict[str, Any] = {}
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", "content": ""}
        if text:
            delta["content"] = text
        if thoughts:
            delta["reasoning_content"] = thoughts
        if calls:
            delta["tool_calls"] = [{"index": first + i, **call} for i, call in enumerate(calls)]
            self._calls[index] = first + len(calls)
        out = []
        if delta:
            self.completion_chars += c.delta_chars(delta)
            out.append(self._writer.delta(delta, index=index))
        finish = finishes.finish_reason(candidate.get("finishReason"), bool(self._calls.get(index)))
        if isinstance(finish, GatewayError):
            self.error = finish
        elif finish is not None and index not in self._done:
            self._done.add(index)
            out.append(self._writer.delta({}, index=index, finish=finish))
        return out


# -- embeddings ----------------------------------------------------------------------------------


def model_path(model: str) -> str:
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/")


def embeddings_body(call: Call) -> tuple[str, dict[str, Any]]:
    """(method, body): embedContent for one string, batchEmbedContents for a list."""
    value = call.body.get("input")
    texts = value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("This model embeds text only: 'input' must be strings.", param="input")
    extra: dict[str, Any] = {}
    if isinstance(call.body.get("dimensions"), int):
        extra["outputDimensionality"] = call.body["dimensions"]
    path = model_path(call.upstream_model)
    if isinstance(value, str):
        return "embedContent", {"content": {"parts": [{"text": value}]}, **extra}
    requests = [{"model": path, "content": {"parts": [{"text": t}]}, **extra} for t in texts]
    return "batchEmbedContents", {"requests": requests}


def _encode_vector(values: list[Any], encoding: Any) -> Any:
    if encoding != "base64":
        return values
    # OpenAI's base64 format: little-endian float32 (the openai SDK asks for it by default)
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def embeddings_response_json(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    parsed = c.load_object(body)
    if isinstance(parsed.get("embedding"), dict):
        vectors = [parsed["embedding"]]
    elif isinstance(parsed.get("embeddings"), list):
        vectors = parsed["embeddings"]
    else:
        raise c.malformed()
    data = []
    for index, vector in enumerate(vectors):
        values = as_dict(vector).get("values")
        if not isinstance(values, list):
            raise c.malformed()
        embedding = _encode_vector(values, call.body.get("encoding_format"))
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    reported = as_dict(parsed.get("usageMetadata")).get("promptTokenCount")
    usage = Usage(prompt_tokens=reported) if isinstance(reported, int) else None
    # without a reported count the client sees the same estimate the gateway bills
    tokens = usage.prompt_tokens if usage else estimate_prompt_tokens(call.body)
    out = {
        "object": "list",
        "data": data,
        "model": call.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(out), usage


# -- errors --------------------------------------------------------------------------------------


def _error_details(body: bytes) -> tuple[str | None, set[str], str | None]:
    """(status, ErrorInfo reasons, RetryInfo delay in whole seconds) from a google.rpc error."""
    try:
        err = as_dict(as_dict(orjson.loads(body)).get("error"))
    except orjson.JSONDecodeError:
        return None, set(), None
    reasons, delay = set(), None
    for detail in as_list(err.get("details")):
        detail = as_dict(detail)
        if isinstance(detail.get("reason"), str):
            reasons.add(detail["reason"])
        retry = detail.get("retryDelay")
        if isinstance(retry, str) and retry.endswith("s"):
            try:
                delay = str(min(max(int(float(retry[:-1]) + 0.999), 1), 3600))
            except ValueError:
                delay = None
    status = err.get("status")
    return (status if isinstance(status, str) else None), reasons, delay


def error_for(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    quota = errors.quota_error(status, body)
    if quota is not None:
        return quota
    rpc_status, reasons, delay = _error_details(body)
    if reasons & {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"} or rpc_status in (
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    ):
        return UpstreamError(
            "The upstream provider refused this channel's credentials.", code="upstream_auth_failed"
        )
    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        return RateLimited(
            "The upstream provider is rate limiting requests. Please retry shortly.",
            code="upstream_rate_limited",
            headers={"Retry-After": errors.retry_after(headers) or delay or "1"},
        )
    if status == 404 or rpc_status == "NOT_FOUND":
        return UpstreamError(
            "The upstream provider does not know this channel's model.", code="upstream_model_not_found"
        )
    if 400 <= status < 500:
        label = (
            rpc_status if rpc_status and rpc_status.isupper() and len(rpc_status) < 40 else "INVALID_ARGUMENT"
        )
        return InvalidRequest(
            f"The upstream provider rejected the request as invalid ({label}).", code="upstream_bad_request"
        )
    return errors.classify(status, b"", headers)


class GeminiProvider:
    name = "gemini"
    local = False

    def _request(
        self, channel: Channel, method: str, body: dict[str, Any], query: str = ""
    ) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if channel.api_key:
            headers["x-goog-api-key"] = channel.api_key  # a header, never `?key=`: URLs reach logs
        return UpstreamRequest(
            url=channel.base_url.rstrip("/") + f"/{method}{query}", headers=headers, body=orjson.dumps(body)
        )

    def generate_request(self, channel: Channel, call: Call, body: dict[str, Any]) -> UpstreamRequest:
        """generateContent, or streamGenerateContent as SSE, of the call's upstream model with `body`
        (also the Gemini dialect's passthrough, whose body is the client's own)."""
        path = model_path(call.upstream_model)
        if call.stream:
            return self._request(channel, f"{path}:streamGenerateContent", body, "?alt=sse")
        return self._request(channel, f"{path}:generateContent", body)

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        return self.generate_request(channel, call, build_body(channel, call))

    def chat_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        return chat_response_json(call, body)

    def stream_translator(self, call: Call) -> GeminiStream:
        return GeminiStream(call)

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        method, body = embeddings_body(call)
        return self._request(channel, f"{model_path(call.upstream_model)}:{method}", body)

    def embeddings_response(self, call: Call, body: bytes) -> tuple[bytes, Usage | None]:
        return embeddings_response_json(call, body)

    def error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_for(status, body, headers)
