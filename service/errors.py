"""Errors the service raises on purpose, each with its HTTP status (and gRPC code, mapped in grpc_server).

Every rule lives in ``service.core``; the REST and gRPC front ends only translate these.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after

    def for_side(self, side: str) -> ServiceError:
        """The same error about one upload of a request that takes two (compare): the message starts with the
        side's name and ``details.side`` names it."""
        return type(self)(f"{side}: {self.message}", {**self.details, "side": side}, self.retry_after)


class InvalidInput(ServiceError):
    status, code = 400, "invalid_argument"


class Unauthenticated(ServiceError):
    status, code = 401, "unauthenticated"


class PermissionDenied(ServiceError):
    status, code = 403, "permission_denied"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "already_exists"


class NothingToCompare(Conflict):
    """A verification against a subject that has no template with the service's model: the request is fine,
    the gallery's state does not allow it (409, as documented, with the precondition's code)."""

    code = "failed_precondition"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Unprocessable(ServiceError):
    """Well-formed input the service cannot use (a probe with no usable gait, an uncalibrated model)."""

    status, code = 422, "failed_precondition"


class RateLimited(ServiceError):
    status, code = 429, "resource_exhausted"


class Unavailable(ServiceError):
    status, code = 503, "unavailable"
