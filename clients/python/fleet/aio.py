"""The asyncio client: :class:`AsyncClient` and :class:`AsyncJob`, with the same methods as
the synchronous Client (client.py), each a coroutine (``events`` and ``list`` are async
iterators). Requests, answers and retries are described once, in _http.py."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, AsyncIterator, Dict, Iterable, List, Optional, Union

import httpx

from . import _http
from ._http import Event, FileResult, FileSpec, Request, RetryPolicy
from .errors import BadRequest, WaitTimeout


class AsyncJob:
    """A submitted job of an AsyncClient: its ``id`` and the answer that created it."""

    def __init__(self, client: "AsyncClient", job: Dict[str, Any]) -> None:
        self.client = client
        self.id: str = job["id"]
        self.submitted: Dict[str, Any] = job

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"

    async def status(self) -> Dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` answers it."""
        return await self.client.status(self.id)

    async def wait(self, timeout: float = 60.0) -> Any:
        """Waits for the job to end and returns its result; raises JobFailed or
        JobCancelled with the job's error, or WaitTimeout."""
        return await self.client._result_of(await self.client.wait(self.id, timeout))

    async def result(self) -> Union[Any, FileResult]:
        """The result (``GET .../result``); NotReady while the job runs."""
        return await self.client.result(self.id)

    def outputs(self, after: int = 0) -> AsyncIterator[Dict[str, Any]]:
        """The partial outputs stored so far, from index ``after`` on (AsyncClient.outputs)."""
        return self.client.outputs(self.id, after)

    async def cancel(self) -> Dict[str, Any]:
        """Cancels the job."""
        return await self.client.cancel(self.id)

    def events(self) -> AsyncIterator[Event]:
        """The job's live events (see AsyncClient.events)."""
        return self.client.events(self.id)


class AsyncClient:
    """The asyncio twin of fleet.Client: same arguments, same methods, awaited. Use it as
    ``async with AsyncClient(url, api_key) as c:``, or await close()."""

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 30.0, *,
                 retry: Optional[RetryPolicy] = None, max_wait_s: int = 60,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_policy = retry if retry is not None else RetryPolicy()
        self.max_wait_s = max_wait_s
        self._http = httpx.AsyncClient(base_url=self.url, headers=_http.auth_headers(api_key),
                                       timeout=timeout, transport=transport)

    async def close(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport ----

    def _build(self, req: Request, timeout: Optional[httpx.Timeout] = None) -> httpx.Request:
        return self._http.build_request(
            req.method, req.path, params=req.params or None, headers=req.headers,
            json=req.json, data=req.data, files=req.files,
            timeout=timeout or _http.read_timeout(self.timeout, req))

    async def _send(self, req: Request, stream: bool = False,
                    timeout: Optional[httpx.Timeout] = None) -> httpx.Response:
        # the retry budget runs from the first failure, not from a long poll's start
        started: Optional[float] = None
        attempt = 0
        while True:
            try:
                resp = await self._http.send(self._build(req, timeout), stream=stream)
            except httpx.TransportError as e:
                started = started or time.monotonic()
                d = self.retry_policy.delay(req, attempt, started, exc=e)
                if d is None:
                    raise _http.transport_error(req, e) from e
                await asyncio.sleep(d)
                attempt += 1
                continue
            if resp.status_code not in (429, 503):
                return resp
            started = started or time.monotonic()
            d = self.retry_policy.delay(req, attempt, started, resp=resp)
            if d is None:
                return resp
            await resp.aclose()
            await asyncio.sleep(d)
            attempt += 1

    async def _json(self, req: Request) -> Any:
        resp = await self._send(req)
        return _http.read_json(resp)

    async def _waited(self, make: Callable[[int], Request], deadline: float) -> Any:
        """One long-poll round: make(N) is the request with Prefer: wait=N. A gateway
        whose FLEET_MAX_WAIT_S is below max_wait_s refuses it (400, nothing done): the
        round is asked again with its bound, which later rounds keep."""
        while True:
            asked = _http.wait_round(deadline, self.max_wait_s)
            try:
                return await self._json(make(asked))
            except BadRequest as e:
                n = _http.gateway_max_wait(e, asked)
                if n is None:
                    raise
                self.max_wait_s = n

    # ------------------------------------------------------------------- the API -----

    async def submit(self, model: str, input: Any = None, *,
                     files: Optional[Iterable[FileSpec]] = None, priority: Optional[str] = None,
                     webhook: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None,
                     ttl_s: Optional[int] = None, idempotency_key: Optional[str] = None,
                     **options: Any) -> AsyncJob:
        """Submits a job; see Client.submit."""
        if files is None and input is None:
            raise ValueError("input is required (any JSON value) unless files are given")
        req = _http.submit_request(model, input, files=files, priority=priority,
                                   webhook=webhook, metadata=metadata, ttl_s=ttl_s,
                                   idempotency_key=idempotency_key, **options)
        return AsyncJob(self, await self._json(req))

    async def submit_batch(self, jobs: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Submits up to 1,000 jobs at once; see Client.submit_batch."""
        return await self._json(_http.batch_request(jobs))

    async def status(self, job_id: str) -> Dict[str, Any]:
        """The job object (``GET /v1/jobs/{id}``)."""
        return await self._json(_http.status_request(job_id))

    async def wait(self, job_id: str, timeout: float = 60.0) -> Dict[str, Any]:
        """Waits until the job ends (long-polling with Prefer: wait); see Client.wait."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self._waited(lambda n: _http.status_request(job_id, n), deadline)
            if job.get("status") in _http.TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.get('status')} after {timeout} s",
                                  job)

    async def result(self, job_id: str, *, msgpack: bool = False) -> Union[Any, FileResult]:
        """The job's result; see Client.result."""
        resp = await self._send(_http.result_request(job_id, msgpack))
        return _http.read_result(resp)

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """The job's Server-Sent Events until it ends, as an async iterator; see
        Client.events."""
        req = Request("GET", _http.job_path(job_id, "/events"),
                      headers={"Accept": "text/event-stream"})
        resp = await self._send(req, stream=True, timeout=httpx.Timeout(self.timeout, read=None))
        try:
            if resp.status_code >= 400:
                _http.raise_for_problem(resp, await resp.aread())
            parser = _http.SSEParser()
            async for line in resp.aiter_lines():
                ev = parser.feed(line)
                if ev is not None:
                    yield ev
            ev = parser.feed("")
            if ev is not None:
                yield ev
        finally:
            await resp.aclose()

    async def outputs(self, job_id: str, after: int = 0, *,
                      page: Optional[int] = None) -> AsyncIterator[Dict[str, Any]]:
        """The job's partial outputs stored so far, from index ``after`` on, in order
        (Client.outputs)."""
        while True:
            page_ = await self._json(_http.outputs_request(job_id, after, page))
            for o in page_["outputs"]:
                yield o
            if not page_["outputs"] or page_["next"] >= page_["count"]:
                return
            after = page_["next"]

    async def cancel(self, job_id: str) -> Dict[str, Any]:
        """Cancels a queued or running job; see Client.cancel."""
        return await self._json(Request("DELETE", _http.job_path(job_id), idempotent=False))

    async def purge(self, job_id: str) -> Dict[str, Any]:
        """Deletes a finished job and its result now."""
        return await self._json(Request("DELETE", _http.job_path(job_id),
                                        params={"purge": "true"}, idempotent=False))

    async def retry(self, job_id: str) -> AsyncJob:
        """Runs a failed or cancelled job again under its id."""
        req = Request("POST", _http.job_path(job_id, "/retry"), idempotent=False)
        return AsyncJob(self, await self._json(req))

    async def list(self, *, status: Union[None, str, Iterable[str]] = None,
                   model: Optional[str] = None, limit: Optional[int] = None,
                   since: Optional[str] = None, until: Optional[str] = None,
                   tenant: Optional[str] = None) -> AsyncIterator[Dict[str, Any]]:
        """Every job that matches, newest first, page after page (an async iterator)."""
        cursor: Optional[str] = None
        while True:
            page = await self._json(_http.list_request(status=status, model=model, limit=limit,
                                                       since=since, until=until, tenant=tenant,
                                                       cursor=cursor))
            for job in page.get("jobs", []):
                yield job
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def submit_and_wait(self, model: str, input: Any = None, *, timeout: float = 60.0,
                              **kw: Any) -> Union[Any, FileResult]:
        """Submits a job, waits for it and returns its result; see Client.submit_and_wait."""
        deadline = time.monotonic() + timeout
        if kw.get("files") is None and input is None:
            raise ValueError("input is required (any JSON value) unless files are given")
        key = kw.pop("idempotency_key", None) or _http.new_idempotency_key()
        if kw.get("files") is not None:  # read once: the request may be built twice
            kw["files"] = [_http.file_part(f, i) for i, f in enumerate(kw["files"])]
        job = await self._waited(lambda n: _http.submit_request(
            model, input, wait_s=n, idempotency_key=key, **kw), deadline)
        if job.get("status") not in _http.TERMINAL:
            job = await self.wait(job["id"], max(0.0, deadline - time.monotonic()))
        return await self._result_of(job)

    async def _result_of(self, job: Dict[str, Any]) -> Union[Any, FileResult]:
        if job.get("status") != "succeeded":
            raise _http.job_error(job)
        # a file comes as itself from GET .../result, not as the JSON of its bytes
        if "result" in job and not _http.is_file_result(job["result"]):
            return job["result"]
        return await self.result(job["id"])
