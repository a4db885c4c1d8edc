"""The upstream-redirection filter, shared by every inbound dialect: a request body may not name
where it goes, whose credentials it carries, which headers it sends, or how a proxying upstream
(LiteLLM, one-api) routes it. Names are compared after normalising case and separators
(`API_BASE`, `apiBase`, `Api-Base` and `api.base` are all `apibase`), at any depth outside the
user's own content (message content, tool schemas, embedding input), which is free text.

Also here: refusing JSON bodies with duplicate keys. Parsers disagree on which duplicate wins
(orjson and Python keep the last, others the first), so the value the reservation reads could
differ from the one an upstream reads in the raw bytes."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

import orjson

from model_go.errors import InvalidRequest

MAX_DEPTH = 32  # outside content

# Normalised names (lower case, letters and digits only). Grouped by what they would do upstream.
DENIED_NAMES = frozenset(
    {
        # where the request goes
        "apibase", "baseurl", "url", "endpoint", "host", "proxy", "proxyurl", "httpproxy",
        "httpsproxy", "azureendpoint", "awsbedrockruntimeendpoint", "vertexlocation",
        "vertexproject", "awsregionname", "regionname", "deploymentid", "apiversion", "apitype",
        # whose credentials it carries
        "apikey", "openaiapikey", "azureadtoken", "organization", "awsaccesskeyid",
        "awssecretaccesskey", "awssessiontoken", "awsprofilename", "awsrolename",
        "vertexcredentials", "xgoogapikey", "cookie",
        # which headers go upstream
        "headers", "extraheaders", "defaultheaders", "authorization", "xapikey",
        "proxyauthorization",
        # how a proxying upstream routes, mocks or bills it
        "customllmprovider", "modellist", "litellmparams", "userconfig", "mockresponse",
        "fallbacks", "contextwindowfallbackdict", "callbacks", "successcallback",
        "failurecallback", "inputcostpertoken", "outputcostpertoken",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ContentPaths:
    """Where a dialect keeps user content: `top` names are content as a whole at the top level;
    inside each item of `lists`, the `item` names are content (the item's other keys are checked)."""

    top: frozenset[str]
    lists: frozenset[str]
    item: frozenset[str]


OPENAI = ContentPaths(
    top=frozenset({"input", "prediction"}),
    lists=frozenset({"messages", "tools", "functions", "response_format"}),
    item=frozenset({"content", "parameters", "schema", "arguments"}),
)
ANTHROPIC = ContentPaths(
    top=frozenset({"system"}),
    lists=frozenset({"messages", "tools"}),
    item=frozenset({"content", "input_schema", "input"}),
)
GEMINI = ContentPaths(
    # generationConfig holds the response schema, whose property names are the user's own
    top=frozenset({"systemInstruction", "system_instruction", "generationConfig"}),
    lists=frozenset({"contents", "tools"}),
    item=frozenset({"parts", "functionDeclarations"}),
)

_SEPARATORS = re.compile(r"[^a-z0-9]")


@lru_cache(maxsize=4096)
def normalise(name: str) -> str:
    """`API_BASE`, `apiBase`, `Api-Base`, fullwidth letters → `apibase`."""
    if not name.isascii():
        name = unicodedata.normalize("NFKC", name)
    return _SEPARATORS.sub("", name.lower())


def refuse_upstream_redirection(body: dict[str, Any], content: ContentPaths) -> None:
    """Raise InvalidRequest (code forbidden_field, naming the path) if the body names a denied field.

    On the hot path: a walk that builds no paths and looks names up in a cache decides; only a body
    it flags is walked again to name the path in the error."""
    if not _clean_body(body, content):
        _explain(body, content)


_VERDICTS: dict[str, bool] = {}  # name → denied; bounded below, so odd names cannot grow it forever


def _denied(key: str) -> bool:
    verdict = _VERDICTS.get(key)
    if verdict is None:
        verdict = normalise(key) in DENIED_NAMES
        if len(_VERDICTS) < 16_384:
            _VERDICTS[key] = verdict
    return verdict


def _clean_body(body: dict[str, Any], content: ContentPaths) -> bool:
    for key, value in body.items():
        if _denied(key):
            return False
        if key in content.top:
            continue
        if key in content.lists:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict) and not _clean_dict(item, 2, content.item):
                    return False
        elif isinstance(value, dict | list) and not _clean(value, 1):
            return False
    return True


def _clean_dict(value: dict[str, Any], depth: int, skip: frozenset[str]) -> bool:
    if depth > MAX_DEPTH:
        return False
    for key, item in value.items():
        if _denied(key):
            return False
        if key in skip:
            continue
        if isinstance(item, dict):
            if not _clean_dict(item, depth + 1, skip):
                return False
        elif isinstance(item, list) and not _clean(item, depth + 1):
            return False
    return True


def _clean(value: Any, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        for key, item in value.items():
            if _denied(key) or (isinstance(item, dict | list) and not _clean(item, depth + 1)):
                return False
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and not _clean(item, depth + 1):
                return False
    return True


def _explain(body: dict[str, Any], content: ContentPaths) -> None:
    """The slow walk of a flagged body: raises naming the path of the first denied field."""
    for key, value in body.items():
        _check_name(key, key)
        if key in content.top:
            continue
        if key in content.lists:
            _walk_items(value, key, content.item)
        else:
            _walk(value, key, 1)


def _check_name(key: str, path: str) -> None:
    if normalise(key) in DENIED_NAMES:
        raise InvalidRequest(
            f"The field '{path[:200]}' is not allowed: model-go chooses the upstream and its headers.",
            param=path[:200],
            code="forbidden_field",
        )


def _walk_items(value: Any, path: str, item_content: frozenset[str]) -> None:
    """A content list (messages, tools): each item's keys are checked, its content is not."""
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        here = f"{path}[{index}]" if isinstance(value, list) else path
        _walk_dict(item, here, 2, item_content)


def _walk_dict(value: dict[str, Any], path: str, depth: int, skip: frozenset[str]) -> None:
    for key, item in value.items():
        here = f"{path}.{key}"
        _check_name(key, here)
        if key in skip:
            continue
        if isinstance(item, dict):
            # a nested object of a tool (e.g. `function`) keeps the same content names
            _walk_dict(item, here, depth + 1, skip) if depth < MAX_DEPTH else _too_deep(here)
        elif isinstance(item, list):
            _walk(item, here, depth + 1)


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        _too_deep(path)
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}"
            _check_name(key, here)
            if isinstance(item, dict | list):
                _walk(item, here, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                _walk(item, f"{path}[{index}]", depth + 1)


def _too_deep(path: str) -> NoReturn:
    raise InvalidRequest("The request body is nested too deeply.", param=path[:200])


# -- duplicate keys -------------------------------------------------------------------------------


def refuse_duplicate_keys(raw: bytes, parsed: dict[str, Any]) -> None:
    r"""Raise InvalidRequest if any object in the JSON text `raw` (already parsed into `parsed`)
    repeats a key.

    Cheap on the usual body: every key has exactly one colon after it, and every other colon is
    inside a string, where it is the same character in the client's bytes and in orjson's
    re-encoding of what it parsed (unless spelled `\u003a`). So the bytes hold a duplicate
    exactly when they have more colons than the re-encoding; only when they spell a colon as an
    escape, or may hold a duplicate, is the text parsed again with a hook that sees every key."""
    if b"\\u003" not in raw and raw.count(b":") <= orjson.dumps(parsed).count(b":"):
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _Duplicate as exc:
        raise exc.error from None
    except RecursionError:
        _too_deep("")
    except ValueError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None


class _Duplicate(ValueError):
    def __init__(self, error: InvalidRequest) -> None:
        super().__init__(error.message)
        self.error = error


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(
                    InvalidRequest(
                        f"The key '{key[:100]}' appears more than once in one object; send each key once.",
                        param=key[:100],
                        code="duplicate_key",
                    )
                )
            seen.add(key)
    return out
