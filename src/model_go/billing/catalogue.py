"""The model catalogue: per model, its context window, its most output tokens and the most tokens
one image part can cost. Shipped defaults (catalogue.json) matched by the longest name prefix, so
`gpt-4o-2024-08-06` finds `gpt-4o`; an operator's values set with the price take precedence."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ModelSpec:
    context_length: int
    max_output_tokens: int
    image_tokens: int

    def overridden(self, *, context_length: int | None, max_output_tokens: int | None) -> ModelSpec:
        """This spec with the operator's values, where set, in place of the shipped ones."""
        return replace(
            self,
            context_length=context_length or self.context_length,
            max_output_tokens=max_output_tokens or self.max_output_tokens,
        )


@dataclass(frozen=True)
class Catalogue:
    default: ModelSpec
    models: dict[str, ModelSpec]

    def lookup(self, *names: str) -> ModelSpec:
        """The spec of the first name with a known prefix (public name first, then the upstream's)."""
        for name in names:
            lowered = name.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" → "gpt-4o"
            for end in range(len(lowered), 0, -1):
                spec = self.models.get(lowered[:end])
                if spec is not None and (end == len(lowered) or not lowered[end].isalnum()):
                    return spec
        return self.default


def _spec(entry: dict[str, int], default: ModelSpec | None) -> ModelSpec:
    fallback = default or ModelSpec(0, 0, 0)
    return ModelSpec(
        context_length=int(entry.get("context_length", fallback.context_length)),
        max_output_tokens=int(entry.get("max_output_tokens", fallback.max_output_tokens)),
        image_tokens=int(entry.get("image_tokens", fallback.image_tokens)),
    )


@cache
def shipped() -> Catalogue:
    """The catalogue shipped inside the package (parsed once)."""
    data = json.loads(resources.files("model_go.billing").joinpath("catalogue.json").read_text("utf-8"))
    default = _spec(data["default"], None)
    return Catalogue(default, {name: _spec(entry, default) for name, entry in data["models"].items()})
