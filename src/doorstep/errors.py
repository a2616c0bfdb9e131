"""The project's error base and its translation, once, into RFC 9457 problem+json responses.

Each domain defines one base exception (a subclass of DoorstepError) with an ErrorCode enum; routes raise
domain errors and never build HTTP errors themselves.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger("doorstep.errors")

PROBLEM_JSON = "application/problem+json"


class ErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RULE_VIOLATED = "rule_violated"
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"


STATUS_BY_CODE = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RULE_VIOLATED: 422,
    ErrorCode.INVALID: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
}


class DoorstepError(Exception):
    """Base of every error the API reports. `detail` is for a person: name the value and the rule."""

    code: StrEnum = ErrorCode.INVALID
    status: int | None = None  # overrides the code's status when set

    def __init__(self, detail: str, *, code: StrEnum | None = None, status: int | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra

    @property
    def http_status(self) -> int:
        if self.status is not None:
            return self.status
        return STATUS_BY_CODE.get(
            ErrorCode(self.code) if self.code in ErrorCode._value2member_map_ else ErrorCode.INVALID, 400
        )


class NotFound(DoorstepError):
    code = ErrorCode.NOT_FOUND


class Conflict(DoorstepError):
    code = ErrorCode.CONFLICT


class RuleViolated(DoorstepError):
    code = ErrorCode.RULE_VIOLATED


class Unauthenticated(DoorstepError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(DoorstepError):
    code = ErrorCode.FORBIDDEN


class RateLimited(DoorstepError):
    code = ErrorCode.RATE_LIMITED


TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Rule violated",
    429: "Too many requests",
    500: "Internal error",
}


def problem(
    status: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://doorstep.dev/problems/{code or status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DoorstepError)
    async def _domain(request: Request, exc: DoorstepError) -> Any:
        if exc.http_status == 303 and "location" in exc.extra:  # staff pages: sign in first
            from starlette.responses import RedirectResponse

            return RedirectResponse(exc.extra["location"], status_code=303)
        headers = exc.extra.pop("headers", None)
        return problem(exc.http_status, exc.detail, code=str(exc.code), headers=headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("body",)), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        return problem(
            422 if request.method != "GET" else 400,
            f"{first['field'] or 'request'}: {first['message']}",
            code="invalid",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "something went wrong on our side; it has been logged. Try again, and if it persists, "
            "check the server log for this time.",
        )
