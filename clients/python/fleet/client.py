"""The synchronous client: :class:`Client` and its :class:`Job` handles (docs/python.md)."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

import httpx

from . import _http
from ._http import Event, FileResult, FileSpec, Request, RetryPolicy
from .errors import BadRequest, WaitTimeout


class Job:
    """A submitted job: its ``id`` and the answer that created it (``submitted``)."""

    def __init__(self, client: "Client", job: Dict[str, Any]) -> None:
        self.client = client
        self.id: str = job["id"]
        self.submitted: Dict[str, Any] = job

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> Dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` answers it."""
        return self.client.status(self.id)

    def wait(self, timeout: float = 60.0) -> Any:
        """Waits for the job to end and returns its result; raises JobFailed or
        JobCancelled with the job's error, or WaitTimeout."""
        return self.client._result_of(self.client.wait(self.id, timeout))

    def result(self) -> Union[Any, FileResult]:
        """The result (``GET .../result``); NotReady while the job runs."""
        return self.client.result(self.id)

    def outputs(self, after: int = 0) -> Iterator[Dict[str, Any]]:
        """The partial outputs stored so far, from index ``after`` on (Client.outputs)."""
        return self.client.outputs(self.id, after)

    def cancel(self) -> Dict[str, Any]:
        """Cancels the job (queued: never runs; running: stops at its next step)."""
        return self.client.cancel(self.id)

    def events(self) -> Iterator[Event]:
        """The job's live events (see Client.events)."""
        return self.client.events(self.id)


class Client:
    """A client of one fleet gateway.

    ``url`` is the gateway's base URL, ``api_key`` the tenant's key (none when the gateway
    runs with FLEET_AUTH=off), ``timeout`` the seconds one request may take (a long poll
    gets its wait on top). ``retry`` decides when a refused or failed request is sent
    again (RetryPolicy: 429 and 503 honouring Retry-After, with jittered backoff).
    ``max_wait_s`` is the longest ``Prefer: wait`` one round asks for (the gateway's
    FLEET_MAX_WAIT_S, 60 by default). Use it as a context manager, or call close().
    """

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 30.0, *,
                 retry: Optional[RetryPolicy] = None, max_wait_s: int = 60,
                 transport: Optional[httpx.BaseTransport] = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_policy = retry if retry is not None else RetryPolicy()
        self.max_wait_s = max_wait_s
        self._http = httpx.Client(base_url=self.url, headers=_http.auth_headers(api_key),
                                  timeout=timeout,
                                  transport=transport or _http.sync_transport())

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ transport ----

    def _build(self, req: Request, timeout: Optional[httpx.Timeout] = None) -> httpx.Request:
        return self._http.build_request(
            req.method, req.path, params=req.params or None, headers=req.headers,
            json=req.json, data=req.data, files=req.files,
            timeout=timeout or _http.read_timeout(self.timeout, req))

    def _send(self, req: Request, stream: bool = False,
              timeout: Optional[httpx.Timeout] = None) -> httpx.Response:
        """Sends req, again after 429/503 or a broken connection as the policy allows."""
        # the retry budget runs from the first failure, not from a long poll's start
        started: Optional[float] = None
        attempt = 0
        while True:
            try:
                resp = self._http.send(self._build(req, timeout), stream=stream)
            except httpx.TransportError as e:
                started = started or time.monotonic()
                d = self.retry_policy.delay(req, attempt, started, exc=e)
                if d is None:
                    raise _http.transport_error(req, e) from e
                time.sleep(d)
                attempt += 1
                continue
            if resp.status_code not in (429, 503):
                return resp
            started = started or time.monotonic()
            d = self.retry_policy.delay(req, attempt, started, resp=resp)
            if d is None:
                return resp
            resp.close()
            time.sleep(d)
            attempt += 1

    def _json(self, req: Request) -> Any:
        return _http.read_json(self._send(req))

    def _waited(self, make: Callable[[int], Request], deadline: float) -> Any:
        """One long-poll round: make(N) is the request with Prefer: wait=N. A gateway
        whose FLEET_MAX_WAIT_S is below max_wait_s refuses it (400, nothing done): the
        round is asked again with its bound, which later rounds keep."""
        while True:
            asked = _http.wait_round(deadline, self.max_wait_s)
            try:
                return self._json(make(asked))
            except BadRequest as e:
                n = _http.gateway_max_wait(e, asked)
                if n is None:
                    raise
                self.max_wait_s = n

    # ------------------------------------------------------------------- the API -----

    def submit(self, model: str, input: Any = None, *, files: Optional[Iterable[FileSpec]] = None,
               priority: Optional[str] = None, webhook: Optional[str] = None,
               metadata: Optional[Dict[str, Any]] = None, ttl_s: Optional[int] = None,
               idempotency_key: Optional[str] = None, **options: Any) -> Job:
        """Submits a job (``POST /v1/jobs``) and returns its Job.

        ``input`` is any JSON value (with ``files``: a JSON object, default ``{}``).
        ``files`` sends a multipart form: each is bytes, a binary file object, a path, or
        ``(name, content)`` / ``(name, content, content_type)``; the model gets them as
        ``input["files"]``. Other submit fields (timeout_s, max_attempts, queue_ttl_s,
        webhook_events) go as keyword options. Every submit carries an Idempotency-Key
        (one is generated when none is given) that its retries reuse, so a submit retried
        after a 503 or a broken connection never makes two jobs.
        """
        if files is None and input is None:
            raise ValueError("input is required (any JSON value) unless files are given")
        req = _http.submit_request(model, input, files=files, priority=priority,
                                   webhook=webhook, metadata=metadata, ttl_s=ttl_s,
                                   idempotency_key=idempotency_key, **options)
        return Job(self, self._json(req))

    def submit_batch(self, jobs: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Submits up to 1,000 jobs at once (``POST /v1/jobs/batch``): each item a dict of
        submit fields (``model``, ``input``, ...). Returns the answer: ``jobs`` (per item,
        the job or its ``error``), ``accepted``, ``refused``. Sent again only after a 429 or
        503 that changed nothing (its items have no Idempotency-Key)."""
        return self._json(_http.batch_request(jobs))

    def status(self, job_id: str) -> Dict[str, Any]:
        """The job object (``GET /v1/jobs/{id}``)."""
        return self._json(_http.status_request(job_id))

    def wait(self, job_id: str, timeout: float = 60.0) -> Dict[str, Any]:
        """Waits until the job ends and returns it (a succeeded job carries ``result``).

        Long-polls with ``Prefer: wait`` in rounds of at most max_wait_s, so the answer
        comes as soon as the job ends, never by sleeping between reads. Raises WaitTimeout
        (with the job as last seen) after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self._waited(lambda n: _http.status_request(job_id, n), deadline)
            if job.get("status") in _http.TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.get('status')} after {timeout} s",
                                  job)

    def result(self, job_id: str, *, msgpack: bool = False) -> Union[Any, FileResult]:
        """The job's result (``GET .../result``): the JSON value, or a FileResult when the
        model returned a file. With ``msgpack=True``, the stored msgpack bytes as they are
        (float32 arrays as ``bin``: docs/api.md, "Result formats"). NotReady while queued
        or running; JobFailed / JobCancelled for a job that did not succeed; Gone once it
        expired."""
        return _http.read_result(self._send(_http.result_request(job_id, msgpack)))

    def events(self, job_id: str) -> Iterator[Event]:
        """The job's Server-Sent Events until it ends: ``state`` first, then ``status``,
        ``progress`` ..., and ``final``; each Event's ``data`` is the job object."""
        req = Request("GET", _http.job_path(job_id, "/events"),
                      headers={"Accept": "text/event-stream"})
        resp = self._send(req, stream=True, timeout=httpx.Timeout(self.timeout, read=None))
        try:
            if resp.status_code >= 400:
                _http.raise_for_problem(resp, resp.read())
            parser = _http.SSEParser()
            for line in resp.iter_lines():
                ev = parser.feed(line)
                if ev is not None:
                    yield ev
            ev = parser.feed("")
            if ev is not None:
                yield ev
        finally:
            resp.close()

    def outputs(self, job_id: str, after: int = 0, *,
                page: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """The job's partial outputs stored so far, from index ``after`` on, in order:
        each ``{"index", "attempt", "output"}`` (``GET /v1/jobs/{id}/outputs?after=N``,
        read page by page). Iterate again from the last index + 1 for later ones, or
        follow ``events()``, whose ``output`` events carry them as they come."""
        while True:
            page_ = self._json(_http.outputs_request(job_id, after, page))
            yield from page_["outputs"]
            if not page_["outputs"] or page_["next"] >= page_["count"]:
                return
            after = page_["next"]

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Cancels a queued or running job (``DELETE /v1/jobs/{id}``); Conflict once it
        finished."""
        return self._json(Request("DELETE", _http.job_path(job_id), idempotent=False))

    def purge(self, job_id: str) -> Dict[str, Any]:
        """Deletes a finished job and its result now (``DELETE ...?purge=true``)."""
        return self._json(Request("DELETE", _http.job_path(job_id), params={"purge": "true"},
                                  idempotent=False))

    def retry(self, job_id: str) -> Job:
        """Runs a failed or cancelled job again under its id (``POST .../retry``)."""
        req = Request("POST", _http.job_path(job_id, "/retry"), idempotent=False)
        return Job(self, self._json(req))

    def list(self, *, status: Union[None, str, Iterable[str]] = None,
             model: Optional[str] = None, limit: Optional[int] = None,
             since: Optional[str] = None, until: Optional[str] = None,
             tenant: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """Every job that matches, newest first, following ``next_cursor`` from page to
        page (``limit`` is the page size, 1..100)."""
        cursor: Optional[str] = None
        while True:
            page = self._json(_http.list_request(status=status, model=model, limit=limit,
                                                 since=since, until=until, tenant=tenant,
                                                 cursor=cursor))
            yield from page.get("jobs", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def submit_and_wait(self, model: str, input: Any = None, *, timeout: float = 60.0,
                        **kw: Any) -> Union[Any, FileResult]:
        """Submits a job, waits for it (the submit itself long-polls with Prefer: wait)
        and returns its result; raises the job's error (JobFailed, JobCancelled) or
        WaitTimeout. Takes submit()'s keyword arguments."""
        deadline = time.monotonic() + timeout
        if kw.get("files") is None and input is None:
            raise ValueError("input is required (any JSON value) unless files are given")
        key = kw.pop("idempotency_key", None) or _http.new_idempotency_key()
        if kw.get("files") is not None:  # read once: the request may be built twice
            kw["files"] = [_http.file_part(f, i) for i, f in enumerate(kw["files"])]
        job = self._waited(lambda n: _http.submit_request(
            model, input, wait_s=n, idempotency_key=key, **kw), deadline)
        if job.get("status") not in _http.TERMINAL:
            job = self.wait(job["id"], max(0.0, deadline - time.monotonic()))
        return self._result_of(job)

    def _result_of(self, job: Dict[str, Any]) -> Union[Any, FileResult]:
        if job.get("status") != "succeeded":
            raise _http.job_error(job)
        # a file comes as itself from GET .../result, not as the JSON of its bytes
        if "result" in job and not _http.is_file_result(job["result"]):
            return job["result"]
        return self.result(job["id"])
