"""What the sync and the async client share: building requests, reading answers, the retry
policy and the Server-Sent Events parser. Nothing here does I/O, so client.py and aio.py
each only run the requests this module describes, with httpx.Client or httpx.AsyncClient.
"""
from __future__ import annotations

import json
import math
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import httpx

from .errors import FleetError, TransportError, error_from_problem

#: statuses after which a job no longer changes
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

#: what a file to submit may be: bytes, an open binary file, or a path
FileSpec = Union[bytes, Any, Tuple[str, Any], Tuple[str, Any, str]]


@dataclass
class FileResult:
    """A result that is a file (docs/api.md, "Submit": a map of ``content_type`` and
    ``bytes``), downloaded as itself: its bytes, content type and file name."""

    content: bytes
    content_type: str
    filename: Optional[str] = None

    def save(self, path: str) -> None:
        """Writes the bytes to ``path``."""
        with open(path, "wb") as f:
            f.write(self.content)


@dataclass
class Event:
    """One Server-Sent Event of ``GET /v1/jobs/{id}/events``: ``event`` (state, status,
    progress, final...), ``data`` (the job object, parsed; the raw text when not JSON)
    and the event ``id``."""

    event: str
    data: Any
    id: Optional[str] = None


@dataclass
class Request:
    """One HTTP request to make, as the client methods describe it."""

    method: str
    path: str
    params: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: Optional[Dict[str, str]] = None
    files: Optional[List[Tuple[str, Tuple[str, Any, str]]]] = None
    #: whether sending it twice has the effect and the answer of once (reads, keyed submits)
    idempotent: bool = True
    #: seconds the gateway may hold the answer (Prefer: wait), added to the read timeout
    hold_s: float = 0.0


def new_idempotency_key() -> str:
    """A fresh random Idempotency-Key, so that retries of one submit make one job."""
    return "py-" + secrets.token_urlsafe(24)


def file_part(spec: FileSpec, index: int) -> Tuple[str, Any, str]:
    """(name, content, content type) of one file to upload."""
    ctype = "application/octet-stream"
    if isinstance(spec, tuple):
        if len(spec) == 3:
            name, content, ctype = spec
        elif len(spec) == 2:
            name, content = spec
        else:
            raise ValueError("a file is bytes, a file object, a path, (name, content) or "
                             "(name, content, content_type)")
        if isinstance(content, str):
            with open(content, "rb") as f:
                content = f.read()
        return str(name), content, str(ctype)
    if isinstance(spec, (bytes, bytearray)):
        return f"file{index}", bytes(spec), ctype
    if isinstance(spec, str):
        with open(spec, "rb") as f:
            data = f.read()
        return spec.replace("\\", "/").rsplit("/", 1)[-1], data, ctype
    name = getattr(spec, "name", None) or f"file{index}"
    return str(name).replace("\\", "/").rsplit("/", 1)[-1], spec.read(), ctype


def submit_request(model: str, input: Any, *, files: Optional[Iterable[FileSpec]] = None,
                   priority: Optional[str] = None, webhook: Optional[str] = None,
                   metadata: Optional[Dict[str, Any]] = None, ttl_s: Optional[int] = None,
                   idempotency_key: Optional[str] = None, wait_s: Optional[int] = None,
                   **options: Any) -> Request:
    """POST /v1/jobs: JSON, or multipart/form-data when there are files. Always carries an
    Idempotency-Key (a generated one when none is given), which every retry reuses."""
    opts: Dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    for k, v in (("priority", priority), ("webhook", webhook), ("metadata", metadata),
                 ("ttl_s", ttl_s)):
        if v is not None:
            opts[k] = v
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    hold = 0.0
    if wait_s is not None:
        headers["Prefer"] = f"wait={int(wait_s)}"
        hold = float(wait_s)
    if files is None:
        body = {"model": model, "input": input}
        body.update(opts)
        return Request("POST", "/v1/jobs", headers=headers, json=body, hold_s=hold)
    parts = [("files", file_part(f, i)) for i, f in enumerate(files)]
    form = {"model": model}
    if input is not None:
        form["input"] = json.dumps(input)
    if opts:
        form["options"] = json.dumps(opts)
    return Request("POST", "/v1/jobs", headers=headers, data=form, files=parts, hold_s=hold)


def batch_request(jobs: List[Dict[str, Any]]) -> Request:
    """POST /v1/jobs/batch. Items have no Idempotency-Key, so a batch is never re-sent."""
    return Request("POST", "/v1/jobs/batch", json={"jobs": list(jobs)}, idempotent=False)


def job_path(job_id: str, suffix: str = "") -> str:
    if not isinstance(job_id, str) or not job_id or "/" in job_id:
        raise ValueError(f"not a job id: {job_id!r}")
    return f"/v1/jobs/{job_id}{suffix}"


def status_request(job_id: str, wait_s: Optional[int] = None) -> Request:
    r = Request("GET", job_path(job_id))
    if wait_s is not None:
        r.headers["Prefer"] = f"wait={int(wait_s)}"
        r.hold_s = float(wait_s)
    return r


def outputs_request(job_id: str, after: int = 0, limit: Optional[int] = None) -> Request:
    params = {"after": str(int(after))}
    if limit is not None:
        params["limit"] = str(int(limit))
    return Request("GET", job_path(job_id) + "/outputs", params=params)


def result_request(job_id: str, msgpack: bool = False) -> Request:
    r = Request("GET", job_path(job_id, "/result"))
    if msgpack:
        r.headers["Accept"] = "application/msgpack"
    return r


def list_request(*, status: Union[None, str, Iterable[str]] = None, model: Optional[str] = None,
                 limit: Optional[int] = None, since: Optional[str] = None,
                 until: Optional[str] = None, tenant: Optional[str] = None,
                 cursor: Optional[str] = None) -> Request:
    params: Dict[str, str] = {}
    if status is not None:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    for k, v in (("model", model), ("limit", limit), ("since", since), ("until", until),
                 ("tenant", tenant), ("cursor", cursor)):
        if v is not None:
            params[k] = str(v)
    return Request("GET", "/v1/jobs", params=params)


def wait_round(deadline: float, max_wait_s: int) -> int:
    """Seconds of ``Prefer: wait`` for the next round: what is left, at most max_wait_s."""
    left = deadline - time.monotonic()
    return max(0, min(max_wait_s, int(math.ceil(left))))


_MAX_WAIT = re.compile(r"from 0 to (\d+) \(FLEET_MAX_WAIT_S\)")


def gateway_max_wait(err: FleetError, asked: int) -> Optional[int]:
    """The gateway's FLEET_MAX_WAIT_S when err refused a wait longer than it (400
    invalid-wait names it), so the next round can ask for that; None otherwise."""
    if err.slug != "invalid-wait":
        return None
    m = _MAX_WAIT.search(err.detail)
    if not m or int(m.group(1)) >= asked:
        return None
    return int(m.group(1))


def retry_after_s(resp: httpx.Response) -> Optional[float]:
    """The answer's Retry-After in seconds (delay-seconds form; an HTTP date counts too)."""
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    v = v.strip()
    if v.isdigit():
        return float(v)
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def raise_for_problem(resp: httpx.Response, body: Optional[bytes] = None) -> None:
    """Raises the typed error of a 4xx/5xx answer."""
    if resp.status_code < 400:
        return
    raw = resp.content if body is None else body
    try:
        problem = json.loads(raw) if raw else {}
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
    except ValueError:
        problem = {"detail": raw[:500].decode("utf-8", "replace")}
    raise error_from_problem(resp.status_code, problem, resp.headers.get("x-request-id"),
                             retry_after_s(resp))


def read_json(resp: httpx.Response) -> Any:
    """The JSON body of a successful answer, or the typed error of a problem."""
    raise_for_problem(resp)
    return resp.json()


def read_result(resp: httpx.Response) -> Union[Any, FileResult]:
    """GET .../result: the model's output as JSON, the msgpack bytes when they were asked
    for, or a FileResult for a file result (any other content type: the body as sent, its
    type and the Content-Disposition file name)."""
    raise_for_problem(resp)
    ctype = resp.headers.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    if media == "application/json":
        return resp.json()
    if media == "application/msgpack":
        return resp.content
    return FileResult(resp.content, ctype, _disposition_filename(
        resp.headers.get("content-disposition", "")))


_FNAME_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.I)
_FNAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', re.I)


def _disposition_filename(cd: str) -> Optional[str]:
    from urllib.parse import unquote
    m = _FNAME_STAR.search(cd)
    if m:
        return unquote(m.group(2).strip(), encoding=m.group(1) or "utf-8", errors="replace")
    m = _FNAME.search(cd)
    if m:
        if m.group(1) is not None:
            return re.sub(r"\\(.)", r"\1", m.group(1))
        return m.group(2).strip()
    return None


#: 429 / 503 problem types whose request changed nothing, so that any request may be sent
#: again; redis-unavailable may come after a write was done (docs/api.md), so after it only
#: requests that are safe to repeat are (reads, and submits by their Idempotency-Key)
WROTE_NOTHING = frozenset({"queue-full", "rate-limited", "too-many-active-jobs", "redis-full",
                           "redis-loading", "too-many-connections"})


def problem_slug(resp: httpx.Response) -> str:
    """The problem type of an answer without its prefix ('' when it has none or its body
    was not read)."""
    try:
        t = resp.json().get("type", "")
    except (httpx.ResponseNotRead, ValueError, AttributeError):
        return ""
    prefix = "urn:fleet:problem:"
    return t[len(prefix):] if isinstance(t, str) and t.startswith(prefix) else ""


class RetryPolicy:
    """When to send a request again: after a 429 or 503 that changed nothing
    (WROTE_NOTHING), and for requests that are safe to repeat (reads, keyed submits) after
    any 429 or 503 and after a connection that failed or broke. Each wait is at least the
    answer's Retry-After, else an exponential backoff, times a random factor in
    [1, 1 + jitter) so that many clients refused at once do not come back at once; bounded
    by ``max_retries`` and ``max_retry_s`` in all."""

    def __init__(self, max_retries: int = 4, max_retry_s: float = 30.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, jitter: float = 0.25,
                 rng: Optional[random.Random] = None) -> None:
        self.max_retries = max_retries
        self.max_retry_s = max_retry_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.jitter = jitter
        self.rng = rng or random.Random()

    def delay(self, req: Request, attempt: int, started: float,
              resp: Optional[httpx.Response] = None,
              exc: Optional[BaseException] = None) -> Optional[float]:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0),
        or None to give up. ``started``: time.monotonic() of the first failure."""
        if attempt >= self.max_retries:
            return None
        if resp is not None:
            if resp.status_code not in (429, 503):
                return None
            if not req.idempotent and problem_slug(resp) not in WROTE_NOTHING:
                return None
            floor = retry_after_s(resp) or 0.0
        elif exc is not None:
            if not req.idempotent:
                return None
            floor = 0.0
        else:
            return None
        d = max(floor, min(self.max_backoff_s, self.backoff_s * (2 ** attempt)))
        d *= 1.0 + self.rng.random() * self.jitter
        if time.monotonic() - started + d > self.max_retry_s:
            return None
        return d


def transport_error(req: Request, exc: BaseException) -> FleetError:
    return TransportError(f"{req.method} {req.path}: {type(exc).__name__}: {exc}")


class SSEParser:
    """The event stream format of the HTML standard ("Server-sent events", 9.2.6), fed one
    line at a time (without its end of line): fields ``event``, ``data`` (several lines
    joined by newlines), ``id`` and ``retry``; lines starting with ``:`` are comments; an
    empty line dispatches the event. ``data`` is parsed as JSON when it is JSON."""

    def __init__(self) -> None:
        self._event = ""
        self._data: List[str] = []
        self.last_id: Optional[str] = None
        self.retry_ms: Optional[int] = None

    def feed(self, line: str) -> Optional[Event]:
        line = line.rstrip("\r\n")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Optional[Event]:
        if not self._data:
            self._event = ""
            return None
        text = "\n".join(self._data)
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        ev = Event(self._event or "message", data, self.last_id)
        self._event, self._data = "", []
        return ev


class _NoDelayBackend:
    """httpcore's network backend with TCP_NODELAY on each new connection (see
    sync_transport)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kw: Any) -> Any:
        stream = self._inner.connect_tcp(*args, **kw)
        sock = stream.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def sync_transport() -> httpx.HTTPTransport:
    """The synchronous client's transport, with TCP_NODELAY. httpx's sync transport writes
    a request's headers and its body in two writes; without TCP_NODELAY the kernel holds
    the body until the gateway acknowledges the headers, which it delays by 40 ms, so every
    POST took 44 ms instead of 1 (docs/python.md, "Measured"). httpx 0.24 and later take
    the option; Debian's 0.23 gets it through its connection pool's network backend. (The
    asyncio transport, on anyio, sets TCP_NODELAY itself.)"""
    opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    try:
        return httpx.HTTPTransport(socket_options=opts)  # type: ignore[call-arg]
    except TypeError:
        return tcp_nodelay(httpx.HTTPTransport())


def tcp_nodelay(t: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """Makes an httpx 0.23 HTTPTransport open its connections with TCP_NODELAY (through
    its connection pool's network backend); returns it."""
    pool = getattr(t, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and hasattr(backend, "connect_tcp") \
            and not isinstance(backend, _NoDelayBackend):
        pool._network_backend = _NoDelayBackend(backend)  # type: ignore[union-attr]
    return t


def auth_headers(api_key: Optional[str]) -> Dict[str, str]:
    h = {"User-Agent": "fleet-python"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


def read_timeout(base: Optional[float], req: Request) -> Optional[httpx.Timeout]:
    """The request's timeout: the client's, plus the time the gateway may hold it."""
    if base is None:
        return None
    return httpx.Timeout(base + req.hold_s)


def is_file_result(value: Any) -> bool:
    """Whether a result is a file (a map of exactly content_type and bytes, and maybe
    filename), which GET .../result sends as itself rather than as JSON."""
    return (isinstance(value, dict) and {"content_type", "bytes"} <= value.keys()
            <= {"content_type", "bytes", "filename"})


def job_error(job: Dict[str, Any]) -> FleetError:
    """The error a job that did not succeed ended with, for Job.wait."""
    from .errors import JobCancelled, JobFailed
    cls = JobCancelled if job.get("status") == "cancelled" else JobFailed
    return cls(f"job {job.get('id')} {job.get('status')}: {job.get('error', '')}", job=job)
