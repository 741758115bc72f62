"""Errors as the API reports them: ``{"error": code, "detail": ...}``, never a traceback.

Validation errors are 422 with one ``{"field": "body.events.0.user_id", "reason": "..."}``
per problem (``"field": "request"`` when no single field is to blame). rekko's own errors map
to statuses: unknown ids 404, bad data or a model that cannot do what was asked 422. Anything
unexpected is logged with its traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rekko.errors import NotFittedError, RekkoError, UnknownIdError
from rekko.service.schemas import ErrorBody

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a short code and a message for the caller; ``extra``
    adds fields next to ``error`` and ``detail`` (such as the ``job_id`` a conflict is with)."""

    def __init__(
        self, status: int, code: str, detail: Any, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra or {}


#: An absolute file path of three or more parts (a URL path such as ``/training/jobs`` is
#: not one).
_SERVER_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:)?[/\\](?:[\w.@+-]+[/\\]){2,}([\w.@+-]*)")


def public_message(error: BaseException, limit: int = 300) -> str:
    """What a caller may read about ``error``: the first line of rekko's own messages with
    server paths cut to their last part; for anything else only the exception's class (the
    details belong in the server log)."""
    if not isinstance(error, RekkoError):
        return f"{type(error).__name__} (details are in the server log)"
    lines = str(error).strip().splitlines()
    text = _SERVER_PATH.sub(lambda found: f".../{found.group(1)}", lines[0] if lines else "")
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid(field: str, reason: str) -> ApiError:
    """A 422 naming one field, shaped like the automatic validation errors."""
    return ApiError(422, "invalid_request", [{"field": field, "reason": reason}])


def error_response(
    status: int, code: str, detail: Any, extra: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse({**(extra or {}), "error": code, "detail": detail}, status_code=status)


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


_DESCRIPTIONS = {
    401: "No API key, or an unknown one (only when this scope has a key)",
    403: "The key is valid but does not open this endpoint",
    404: "Unknown id or model version",
    409: "Conflicts with the current state",
    413: "Request body over the server's max_body_bytes",
    422: "Invalid request: each field and what is wrong",
    503: "No model version is served yet",
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_OVERLOADED = "the server is at its max_in_flight requests (retry after Retry-After seconds)"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for route decorators: each status answered as :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def document_errors(schema: dict[str, Any], unguarded: frozenset[str]) -> None:
    """Make the OpenAPI ``schema`` say what the service really answers (in place).

    The framework's own 422 body (``HTTPValidationError``: loc, msg, type) is replaced by
    :class:`ErrorBody`; every operation with a body may answer 413 (the body limit), and every
    path outside ``unguarded`` 503 (admission control), both before any route runs.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    if "ErrorBody" not in components:
        definition = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in definition.pop("$defs", {}).items():
            components.setdefault(name, nested)
        components["ErrorBody"] = definition
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error_response(_DESCRIPTIONS[422])
            if "requestBody" in operation:
                responses.setdefault("413", _error_response(_DESCRIPTIONS[413]))
            if path in unguarded:
                continue
            if "503" not in responses:
                responses["503"] = _error_response(_OVERLOADED.capitalize())
            elif _OVERLOADED not in responses["503"]["description"]:
                responses["503"]["description"] += f"; or {_OVERLOADED}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.detail, error.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field(item.get("loc", ())), "reason": str(item.get("msg", "invalid"))}
            for item in error.errors()
        ]
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # a body the framework could not read (not UTF-8...)
            return error_response(
                422, "invalid_request", [{"field": "body", "reason": str(error.detail)}]
            )
        code = _STATUS_CODES.get(error.status_code, "error")
        return error_response(error.status_code, code, error.detail)

    @app.exception_handler(RekkoError)
    async def _rekko(_request: Request, error: RekkoError) -> JSONResponse:
        if isinstance(error, UnknownIdError):
            return error_response(404, "not_found", str(error))
        if isinstance(error, NotFittedError):
            return error_response(503, "unavailable", str(error))
        return error_response(422, "invalid_request", [{"field": "request", "reason": str(error)}])

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error (details are in the server log)")
