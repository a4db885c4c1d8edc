"""One exception tree for everything a client can be told, and one renderer for it.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error   (names the param)
    ├── AuthenticationFailed          401 authentication_error
    ├── InsufficientBalance           402 insufficient_quota
    ├── PermissionDenied              403 permission_error
    ├── NotFound                      404 not_found_error
    ├── MethodNotAllowed              405 invalid_request_error
    ├── RequestTimeout                408 invalid_request_error   (a client too slow to send)
    ├── Conflict                      409 invalid_request_error   (the data changed or already exists)
    ├── PayloadTooLarge               413 invalid_request_error
    ├── RateLimited                   429 rate_limit_error        (Retry-After)
    ├── HeadersTooLarge               431 invalid_request_error
    ├── ServerBusy                    503 api_error               (the connection cap is reached)
    ├── BalanceUnavailable            503 api_error               (the shared ledger is unreachable)
    ├── DatabaseUnavailable           503 api_error               (the database is unreachable)
    ├── UsageBacklog                  503 api_error               (too much usage waits to be written)
    └── UpstreamError                 502 upstream_error
        ├── UpstreamUnavailable       503
        └── UpstreamTimeout           504

Messages are written by us: never an upstream body, URL, host or key, never prompt text.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str = "The server had an error while processing your request.",
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientBalance(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_balance"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class Unprocessable(GatewayError):
    status = 422
    type = "invalid_request_error"
    code = "unprocessable"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"


class ServerBusy(GatewayError):
    status = 503
    type = "api_error"
    code = "server_busy"


class BalanceUnavailable(GatewayError):
    """Replicas keep balances in Redis; while it cannot be reached no request can be paid for."""

    status = 503
    type = "api_error"
    code = "balance_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Balances cannot be checked for a moment, so nothing was sent upstream and nothing was"
            " charged. Retry shortly.",
            headers={"Retry-After": "1"},
        )


class DatabaseUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The database cannot be reached for a moment; nothing was changed. Retry shortly.",
            headers={"Retry-After": "2"},
        )


class UsageBacklog(GatewayError):
    """The usage writer holds more unwritten rows than MODELGO_USAGE_MAX_PENDING_ROWS: serving more
    would grow memory without bound and put more unrecorded usage at risk of a crash."""

    status = 503
    type = "api_error"
    code = "usage_backlog"

    def __init__(self) -> None:
        super().__init__(
            "Usage cannot be recorded for a moment, so no request is taken; nothing was charged."
            " Retry shortly.",
            headers={"Retry-After": "5"},
        )


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_for_status(status: int, message: str) -> GatewayError:
    """The error class a plain HTTP status maps to (used for framework-level errors)."""
    by_status: dict[int, type[GatewayError]] = {
        400: InvalidRequest,
        401: AuthenticationFailed,
        402: InsufficientBalance,
        403: PermissionDenied,
        404: NotFound,
        405: MethodNotAllowed,
        413: PayloadTooLarge,
        422: InvalidRequest,
        429: RateLimited,
    }
    return by_status.get(status, GatewayError)(message)


class RepoError(Exception):
    """A request the data cannot satisfy (duplicate name, unknown user, bad value), raised by the
    storage layer; the API answers it as a 400 and the CLI prints it."""
