"""Errors of the fleet client, typed by the gateway's problem types (docs/api.md).

Every error the gateway answers is an RFC 9457 problem; :func:`error_from_problem` maps its
``type`` (``urn:fleet:problem:<slug>``) to the most specific class below, falling back on
the HTTP status, so ``except fleet.NotFound`` catches ``job-not-found`` and ``not-found``
alike. Each error carries the problem dict, the status and the request id.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

PROBLEM_PREFIX = "urn:fleet:problem:"


class FleetError(Exception):
    """Base of every error this package raises.

    ``problem`` is the gateway's problem dict (empty when there was no answer),
    ``status`` the HTTP status (None without an answer), ``request_id`` the answer's
    ``X-Request-ID``, ``retry_after`` the ``Retry-After`` seconds it asked for, if any.
    """

    def __init__(self, message: str, *, status: Optional[int] = None,
                 problem: Optional[Dict[str, Any]] = None, request_id: Optional[str] = None,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem: Dict[str, Any] = dict(problem or {})
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        """The problem type URI, e.g. ``urn:fleet:problem:job-not-found`` ('' without one)."""
        return str(self.problem.get("type", ""))

    @property
    def slug(self) -> str:
        """The problem type without its ``urn:fleet:problem:`` prefix."""
        t = self.type
        return t[len(PROBLEM_PREFIX):] if t.startswith(PROBLEM_PREFIX) else t

    @property
    def detail(self) -> str:
        """The problem's ``detail`` (what exactly was wrong)."""
        return str(self.problem.get("detail", ""))


class TransportError(FleetError):
    """The gateway could not be reached, or the connection broke before an answer."""


class WaitTimeout(FleetError, TimeoutError):
    """``wait`` ran out of time before the job ended; ``job`` is the job as last seen."""

    def __init__(self, message: str, job: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.job: Dict[str, Any] = dict(job or {})


class BadRequest(FleetError):
    """400: a malformed request (invalid-json, invalid-body, invalid-query, invalid-id...)."""


class Invalid(FleetError):
    """422: well-formed but not a valid job (invalid-job, value out of range...)."""


class UnknownModel(Invalid):
    """422 unknown-model: the gateway accepts no jobs for that model."""


class IdempotencyKeyReused(Invalid):
    """422 idempotency-key-reused: the key was used with another request body."""


class WebhookRefused(Invalid):
    """422 webhook-refused / webhooks-disabled: the webhook URL cannot be used."""


class Unauthorized(FleetError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(FleetError):
    """403: the key may not do this (an operator's route, another tenant's list)."""


class NotFound(FleetError):
    """404: no such job for this key (job-not-found), or no such route."""


class Gone(FleetError):
    """410 expired: the job ended and its keys expired; ``expired_at`` and ``job_status``
    say when and how it ended."""

    @property
    def expired_at(self) -> Optional[str]:
        return self.problem.get("expired_at")

    @property
    def job_status(self) -> Optional[str]:
        return self.problem.get("job_status")


class Conflict(FleetError):
    """409: the job is not in a state that allows this (job-finished, job-not-retryable,
    job-not-finished)."""


class JobError(FleetError):
    """The job itself ended without a result; ``job`` is the job object when known."""

    def __init__(self, message: str, *, job: Optional[Dict[str, Any]] = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.job: Dict[str, Any] = dict(job or {})

    @property
    def error(self) -> str:
        """The job's error message (its ``error`` field, or the problem's detail)."""
        return str(self.job.get("error") or self.detail or self)


class JobFailed(JobError, Conflict):
    """The job failed (``wait``), or its result was asked for (409 job-failed)."""


class JobCancelled(JobError, Conflict):
    """The job was cancelled (``wait``), or its result was asked for (409 job-cancelled)."""


class PayloadTooLarge(FleetError):
    """413: the body (or the batch) is over the gateway's or the tenant's limit."""


class UnsupportedMediaType(FleetError):
    """415: a content type the gateway does not take."""


class NotReady(FleetError):
    """425 result-not-ready: the job is still queued or running."""


class RateLimited(FleetError):
    """429: the tenant submits faster than its rate (rate-limited); base of QuotaExceeded."""


class QuotaExceeded(RateLimited):
    """429 too-many-active-jobs: the tenant has max_active jobs queued or running."""


class ServerError(FleetError):
    """500 (internal, result-unreadable) or another 5xx that is not 503."""


class Unavailable(FleetError):
    """503: the gateway cannot take the request now (redis-unavailable, redis-loading,
    too-many-connections); base of QueueFull and StoreFull."""


class QueueFull(Unavailable):
    """503 queue-full: the model's queue holds FLEET_MAX_QUEUE jobs."""


class StoreFull(Unavailable):
    """503 redis-full: Redis reached maxmemory; nothing was written."""


_BY_SLUG = {
    "unknown-model": UnknownModel,
    "idempotency-key-reused": IdempotencyKeyReused,
    "webhook-refused": WebhookRefused,
    "webhooks-disabled": WebhookRefused,
    "expired": Gone,
    "job-failed": JobFailed,
    "job-cancelled": JobCancelled,
    "result-not-ready": NotReady,
    "rate-limited": RateLimited,
    "too-many-active-jobs": QuotaExceeded,
    "queue-full": QueueFull,
    "redis-full": StoreFull,
}

_BY_STATUS = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    410: Gone, 413: PayloadTooLarge, 414: BadRequest, 415: UnsupportedMediaType,
    422: Invalid, 425: NotReady, 429: RateLimited, 431: BadRequest, 503: Unavailable,
}


def error_class(status: int, problem: Dict[str, Any]) -> type:
    """The error class for an answer: by problem type first, then by status."""
    t = str(problem.get("type", ""))
    slug = t[len(PROBLEM_PREFIX):] if t.startswith(PROBLEM_PREFIX) else ""
    if slug in _BY_SLUG:
        return _BY_SLUG[slug]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return FleetError


def error_from_problem(status: int, problem: Dict[str, Any], request_id: Optional[str],
                       retry_after: Optional[float]) -> FleetError:
    """Builds the typed error for a problem answer."""
    cls = error_class(status, problem)
    title = problem.get("title") or f"HTTP {status}"
    detail = problem.get("detail")
    msg = f"{status} {title}" + (f": {detail}" if detail else "")
    return cls(msg, status=status, problem=problem, request_id=request_id,
               retry_after=retry_after)
