"""fleet: a Python client of the fleet job gateway (docs/python.md, docs/api.md).

    import fleet
    with fleet.Client("http://127.0.0.1:8080", api_key="fk_...") as c:
        print(c.submit_and_wait("echo", {"hello": "world"}))
"""
from ._http import Event, FileResult, RetryPolicy
from .aio import AsyncClient, AsyncJob
from .client import Client, Job
from .errors import (BadRequest, Conflict, FleetError, Forbidden, Gone, IdempotencyKeyReused,
                     Invalid, JobCancelled, JobError, JobFailed, NotFound, NotReady,
                     PayloadTooLarge, QueueFull, QuotaExceeded, RateLimited, ServerError,
                     StoreFull, TransportError, Unauthorized, Unavailable, UnknownModel,
                     UnsupportedMediaType, WaitTimeout, WebhookRefused)
from . import webhooks

__all__ = [
    "AsyncClient", "AsyncJob", "BadRequest", "Client", "Conflict", "Event", "FileResult",
    "FleetError", "Forbidden", "Gone", "IdempotencyKeyReused", "Invalid", "Job",
    "JobCancelled", "JobError", "JobFailed", "NotFound", "NotReady", "PayloadTooLarge",
    "QueueFull", "QuotaExceeded", "RateLimited", "RetryPolicy", "ServerError", "StoreFull",
    "TransportError", "Unauthorized", "Unavailable", "UnknownModel", "UnsupportedMediaType",
    "WaitTimeout", "WebhookRefused", "webhooks",
]
