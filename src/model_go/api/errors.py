"""Error handling for /api: every failure is {"error": {...}}; no FastAPI 422 in answers or OpenAPI."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from model_go.errors import Conflict, DatabaseUnavailable, GatewayError, InvalidRequest, RepoError
from model_go.observability.logs import Occasional
from model_go.services.database import unreachable

log = logging.getLogger("model_go.api")
database_down = Occasional(log, "the database is unreachable: /api requests get 503 database_unavailable")


def render(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    param = _param(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown field '{param}'.", param=param, code="unknown_field")
    if kind == "missing":
        return InvalidRequest(f"Missing field '{param}'.", param=param, code="missing_field")
    if kind == "json_invalid":
        return InvalidRequest("The body is not valid JSON.", param=None, code="invalid_json")
    message = str(first.get("msg", "bad value")).rstrip(".")
    return InvalidRequest(f"Invalid value for '{param}': {message}.", param=param, code="invalid_value")


def install(app: FastAPI) -> None:
    """Handlers for the errors /api raises, and an OpenAPI document without FastAPI's 422 entries."""
    previous = app.exception_handlers.get(RequestValidationError)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith("/api/") or previous is None:
            return render(validation_error(exc))
        result = previous(request, exc)
        return await result if inspect.isawaitable(result) else result

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return render(exc)

    async def on_repo_error(request: Request, exc: Exception) -> Response:
        return render(InvalidRequest(str(exc), code="invalid_value"))

    async def on_integrity_error(request: Request, exc: Exception) -> Response:
        # two requests raced for the same unique value (a username, an email): the loser gets a 409
        return render(Conflict("That conflicts with data saved a moment ago; please retry."))

    async def on_out_of_range(request: Request, exc: Exception) -> Response:
        # a number no column can hold (inputs are bounded at the edge; this is the net under it)
        return render(InvalidRequest("A number in the request is out of range.", code="out_of_range"))

    async def on_database_error(request: Request, exc: Exception) -> Response:
        # handled here, not by the catch-all below (whose errors the server also logs as a crash)
        if unreachable(exc):
            database_down()
            return render(DatabaseUnavailable())
        return await on_unexpected(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render(GatewayError())

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RepoError, on_repo_error)
    app.add_exception_handler(IntegrityError, on_integrity_error)
    app.add_exception_handler(OverflowError, on_out_of_range)
    app.add_exception_handler(DataError, on_out_of_range)
    for failure in (DBAPIError, OSError, TimeoutError):  # the database out of reach, among others
        app.add_exception_handler(failure, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)

    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with FastAPI's 422 answers replaced by our 400 error body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses.pop("422")
                responses["400"] = {
                    "description": "Invalid request",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["ErrorBody"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": "string", "nullable": True},
                    "code": {"type": "string", "nullable": True},
                },
            }
        },
    }
    app.openapi_schema = schema
    return schema
