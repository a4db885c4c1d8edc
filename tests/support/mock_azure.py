"""A mock Azure OpenAI resource on a loopback port: the OpenAI mock's behaviour (chosen by the
body's model name, see mock_openai.py) behind Azure's addressing --
POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=... with the key
in the `api-key` header. Requests without both are refused the way Azure refuses them."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tests.support.mock_anthropic import serve
from tests.support.mock_openai import MockUpstream, Recorded

AZURE_KEY = "azure-upstream-SECRET-321"


@dataclass
class MockAzure(MockUpstream):
    key: str = AZURE_KEY
    api_version: str = "2024-10-21"
    deployments: list[str] = field(default_factory=list)
    refused: list[Recorded] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure_embeddings)
        await serve(self, app)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("api-key") != self.key or "Authorization" in request.headers:
            self.refused.append(Recorded(request.path_qs, dict(request.headers), None))
            message = "Access denied due to invalid subscription key or wrong API endpoint."
            return web.json_response({"error": {"code": "401", "message": message}}, status=401)
        if request.query.get("api-version") != self.api_version:
            self.refused.append(Recorded(request.path_qs, dict(request.headers), None))
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        self.deployments.append(request.match_info["deployment"])
        return None

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        return self._refusal(request) or await MockUpstream._chat(self, request)

    async def _azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        return self._refusal(request) or await MockUpstream._embeddings(self, request)
