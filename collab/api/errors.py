"""The one error shape every API answer uses: ``{"error": {"code", "message"}}``.

Services raise ``ApiError`` subclasses that know nothing of HTTP handlers but
carry the status a route should answer with, so rules and their error codes
live together in the service.
"""

from __future__ import annotations

from typing import Any

from signaling.protocol import CommandError


class ApiError(CommandError):
    """A refusal with an HTTP status; on the socket it becomes an error answer."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, code=code, **extra)
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Gone(ApiError):
    status = 410
    code = "gone"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"Retry-After": str(seconds)}, retry_after=seconds)


class Unavailable(ApiError):
    status = 503
    code = "unavailable"
