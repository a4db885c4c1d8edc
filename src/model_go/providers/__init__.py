"""Upstream translators, one module each, and the registry that names them."""

from __future__ import annotations

from model_go.providers.anthropic import AnthropicProvider
from model_go.providers.azure import AzureProvider
from model_go.providers.base import Provider
from model_go.providers.gemini import GeminiProvider
from model_go.providers.mock import MockProvider
from model_go.providers.openai import OpenAIProvider
from model_go.providers.presets import preset_providers

REGISTRY: dict[str, Provider] = {
    **preset_providers(),  # OpenAI-compatible vendors from presets.json
    "openai": OpenAIProvider(),
    "mock": MockProvider(),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
    "azure": AzureProvider(),
}
