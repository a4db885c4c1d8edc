"""The management REST API under /api (session cookie or API key), described at /openapi.json."""

from __future__ import annotations

from fastapi import FastAPI

from model_go.api import (
    admin_routes,
    auth_routes,
    billing_routes,
    errors,
    keys_routes,
    me_routes,
    policy_routes,
    tickets_routes,
    usage_routes,
)


def install(app: FastAPI) -> None:
    """Mount every /api router and the /api error handling on the app."""
    for module in (
        auth_routes,
        me_routes,
        policy_routes,
        keys_routes,
        usage_routes,
        tickets_routes,
        admin_routes,
        billing_routes,
    ):
        app.include_router(module.router)
    errors.install(app)
