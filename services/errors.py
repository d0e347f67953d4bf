"""Domain errors that know their HTTP status.

Every layer raises these; the ingress renders them as OpenAI error bodies in one place, so a
deployment never has to know about HTTP and a client always gets the same error shape.
"""

from __future__ import annotations

from typing import Any


class CoeError(Exception):
    """Base error. ``status_code`` and ``error_type`` follow OpenAI's conventions."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Ray replicas). Subclasses have their own __init__
        # signatures, so rebuild from the attributes rather than by calling __init__ again.
        return (_rebuild_error, (type(self), dict(self.__dict__)))

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return error_body(self.message, self.error_type, self.param, self.code)


def _rebuild_error(cls: type[CoeError], state: dict[str, Any]) -> CoeError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class InvalidRequestError(CoeError):
    """The request is malformed or asks for something out of range (400)."""

    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """An OpenAI parameter the service does not implement (400, names the parameter)."""

    def __init__(self, param: str, detail: str = "") -> None:
        message = f"Parameter '{param}' is not supported by coe-router" + (f": {detail}" if detail else ".")
        super().__init__(message, param=param, code="unsupported_parameter")


class ContextLengthError(InvalidRequestError):
    """The prompt (plus requested completion) does not fit the expert's context window."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages", code="context_length_exceeded")


class ModelNotFoundError(CoeError):
    """The ``model`` field names no configured expert (404)."""

    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = "model", code: str | None = "model_not_found") -> None:
        super().__init__(message, param=param, code=code)


class NotFoundError(CoeError):
    """A request names a resource (a completion, ...) that the service does not know (404)."""

    status_code = 404
    error_type = "invalid_request_error"


class OverloadedError(CoeError):
    """More concurrent requests than the ingress accepts (429, with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "rate_limit_exceeded",
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after_s = retry_after_s


class RateLimitedError(OverloadedError):
    """A key is over its requests or tokens per minute (429, with OpenAI's x-ratelimit headers)."""

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.headers = headers


class AuthenticationError(CoeError):
    """No API key, or one the service does not know (401). The message never repeats the key."""

    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_api_key")


class PermissionDeniedError(CoeError):
    """A valid key without the role the endpoint needs (403)."""

    status_code = 403
    error_type = "permission_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="insufficient_permissions")


class UpstreamError(CoeError):
    """A remote expert failed or could not be reached (502/503/504)."""

    error_type = "api_error"

    def __init__(self, message: str, *, status_code: int = 502, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status_code = status_code


class ServiceUnavailableError(CoeError):
    """The service (or one expert) is not ready to answer (503)."""

    status_code = 503
    error_type = "service_unavailable"


class ModelFilesMissingError(CoeError):
    """Model weights or an adapter are not where config says; the message names the fix."""

    status_code = 503
    error_type = "service_unavailable"


class RequestTooLargeError(CoeError):
    """The request body is larger than the ingress accepts (413)."""

    status_code = 413
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="request_too_large")


class DeadlineExceededError(CoeError):
    """An expert did not answer in time, or the request outlived its deadline (504)."""

    status_code = 504
    error_type = "timeout_error"

    def __init__(self, message: str, *, code: str = "deadline_exceeded") -> None:
        super().__init__(message, code=code)
