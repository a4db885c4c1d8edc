"""Azure OpenAI upstream: the OpenAI wire format, addressed by deployment and api-version."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from model_go.providers.base import Channel, UpstreamRequest
from model_go.providers.openai import OpenAIProvider
from model_go.wire.canonical import Call

DEFAULT_API_VERSION = "2024-10-21"


def deployment(channel: Channel, call: Call) -> str:
    """The channel's `deployments` map (public model -> deployment), else the upstream model."""
    mapping = channel.config.get("deployments")
    if isinstance(mapping, dict):
        for key in (call.model, call.upstream_model):
            name = mapping.get(key)
            if isinstance(name, str) and name:
                return name
    return call.upstream_model


def deployment_url(channel: Channel, call: Call, path: str) -> str:
    base = channel.base_url.rstrip("/")
    base = base.removesuffix("/openai")  # accept the endpoint with or without the /openai suffix
    version = str(channel.config.get("api_version") or DEFAULT_API_VERSION)
    name = quote(deployment(channel, call), safe="")
    return f"{base}/openai/deployments/{name}{path}?api-version={quote(version, safe='')}"


class AzureProvider(OpenAIProvider):
    """Bodies, streams, usage and errors are OpenAI's: only the address and the key header differ."""

    name = "azure"

    def _headers(self, channel: Channel) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if channel.api_key:
            headers["api-key"] = channel.api_key
        return headers

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        request = super().chat_request(channel, call)
        return replace(request, url=deployment_url(channel, call, "/chat/completions"))

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        request = super().embeddings_request(channel, call)
        return replace(request, url=deployment_url(channel, call, "/embeddings"))
