"""Upstream translators, one module each, and the registry that names them."""

from __future__ import annotations

from model_go.providers.base import Provider
from model_go.providers.mock import MockProvider
from model_go.providers.openai import OpenAIProvider

REGISTRY: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "mock": MockProvider(),
}


def get_provider(name: str) -> Provider:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
