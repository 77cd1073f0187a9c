"""fleet.AsyncClient against a live gateway: every method of the synchronous client,
awaited (asyncio.run per case: the standard library's event loop, no plug-in)."""
from __future__ import annotations

import asyncio

import pytest

import fleet
from conftest import AsyncRecordingTransport, Recorder

NO_RETRY = fleet.RetryPolicy(max_retries=0)


def run(coro):
    return asyncio.run(coro)


def aclient(stack, rec=None, **kw):
    t = AsyncRecordingTransport(rec) if rec is not None else None
    return fleet.AsyncClient(stack.url, stack.api_key, transport=t, **kw)


def test_submit_wait_status_result(fleet_stack):
    async def main():
        async with aclient(fleet_stack) as c:
            assert await c.submit_and_wait("echo", {"a": [1, 2]}, timeout=30) == {"a": [1, 2]}
            job = await c.submit("echo", {"n": 2}, priority="low", metadata={"k": "v"}, ttl_s=900)
            assert isinstance(job, fleet.AsyncJob)
            assert await job.wait(30) == {"n": 2}
            st = await job.status()
            assert st["status"] == "succeeded" and st["metadata"] == {"k": "v"}
            assert await c.status(job.id) == st
            assert await job.result() == {"n": 2} == await c.result(job.id)
            assert await c.result(job.id, msgpack=True) == b"\x81\xa1n\x02"
            done = await c.wait(job.id, 5)
            assert done["result"] == {"n": 2}
    run(main())


def test_wait_long_polls_in_rounds(fleet_stack):
    rec = Recorder()

    async def main():
        async with aclient(fleet_stack, rec, max_wait_s=1) as c:
            job = await c.submit("sleep", {"ms": 2500, "steps": 5})
            assert (await job.wait(30))["slept_ms"] == 2500
            return job
    job = run(main())
    gets = rec.sent("GET", f"/v1/jobs/{job.id}")
    assert len(gets) >= 2 and all(g[2].get("prefer") == "wait=1" for g in gets)


def test_outputs_async_iterator(fleet_stack):
    async def go():
        async with aclient(fleet_stack) as ac:
            job = await ac.submit("sleep", {"ms": 100, "steps": 3, "emit": True})
            await job.wait(30)
            got = [o["output"]["step"] async for o in ac.outputs(job.id, page=1)]
            assert got == [1, 2, 3]
            assert [o["index"] async for o in job.outputs(2)] == [2]
    run(go())


def test_wait_timeout(fleet_stack):
    async def main():
        async with aclient(fleet_stack) as c:
            job = await c.submit("sleep", {"ms": 20000})
            with pytest.raises(fleet.WaitTimeout):
                await c.wait(job.id, 1)
            await job.cancel()
    run(main())


def test_events_async_iterator(fleet_stack):
    async def main():
        async with aclient(fleet_stack) as c:
            job = await c.submit("sleep", {"ms": 600, "steps": 3})
            return [e async for e in job.events()]
    events = run(main())
    assert events[0].event == "state" and events[-1].event == "final"
    assert events[-1].data["status"] == "succeeded"
    assert len({e.data["id"] for e in events}) == 1


def test_cancel_retry_and_job_errors(fleet_stack):
    async def main():
        async with aclient(fleet_stack, retry=NO_RETRY) as c:
            job = await c.submit("sleep", {"ms": 30000, "steps": 300})
            assert (await job.cancel())["id"] == job.id
            with pytest.raises(fleet.JobCancelled):
                await job.wait(30)
            with pytest.raises(fleet.JobCancelled):
                await c.result(job.id)
            with pytest.raises(fleet.Conflict):
                await c.cancel(job.id)
            bad = await c.submit("sleep", {"ms": 10, "fail": "no pages"}, max_attempts=1)
            with pytest.raises(fleet.JobFailed) as ei:
                await bad.wait(30)
            assert "no pages" in ei.value.error
            again = await c.retry(bad.id)
            assert again.id == bad.id
            with pytest.raises(fleet.JobFailed):
                await again.wait(30)
            with pytest.raises(fleet.NotFound):
                await c.status("0" * 26)
            with pytest.raises(fleet.UnknownModel):
                await c.submit("nope", {})
            idle = await c.submit("idle", {})
            with pytest.raises(fleet.NotReady):
                await idle.result()
            await idle.cancel()
            with pytest.raises(fleet.NotFound):
                [e async for e in c.events("0" * 26)]
            ok = await c.submit("echo", {})
            await ok.wait(30)
            assert (await c.purge(ok.id))["deleted"] is True
            with pytest.raises(fleet.NotFound):
                await ok.status()
    run(main())


def test_list_and_batch(fleet_stack):
    rec = Recorder()

    async def main():
        async with aclient(fleet_stack, rec) as c:
            ans = await c.submit_batch([{"model": "echo", "input": {"i": i}} for i in range(5)])
            assert ans["accepted"] == 5
            ids = [j["id"] for j in ans["jobs"]]
            for i in ids:
                await c.wait(i, 30)
            got = [j["id"] async for j in c.list(model="echo", limit=2)]
            return ids, got
    ids, got = run(main())
    assert [i for i in got if i in ids] == ids[::-1]
    assert len(rec.sent("GET", "/v1/jobs")) - len(rec.sent("GET", "/v1/jobs/")) >= 3


def test_multipart_files(fleet_stack):
    async def main():
        async with aclient(fleet_stack) as c:
            return await c.submit_and_wait("echo", {"lang": "en"}, timeout=30,
                                           files=[("a.txt", b"one two", "text/plain"),
                                                  ("b.txt", b"three")])
    out = run(main())
    assert [(f["name"], f["size"]) for f in out["files"]] == [("a.txt", 7), ("b.txt", 5)]


def test_a_connection_failure_is_retried_with_the_same_key(fleet_stack):
    rec = Recorder(fail_first=1)

    async def main():
        async with aclient(fleet_stack, rec) as c:
            job = await c.submit("echo", {"socket": 1})
            assert await job.wait(30) == {"socket": 1}
    run(main())
    posts = rec.sent("POST")
    assert [p[3] for p in posts] == [None, 202]
    assert posts[0][2]["idempotency-key"] == posts[1][2]["idempotency-key"]


def test_a_full_queue_is_retried_after_retry_after(make_fleet_stack):
    s = make_fleet_stack(gateway_env={"FLEET_MAX_QUEUE": "1"}, workers=[])
    rec = Recorder()

    async def main():
        async with fleet.AsyncClient(s.url, s.api_key, transport=AsyncRecordingTransport(rec),
                                     retry=fleet.RetryPolicy(max_retries=20,
                                                             max_retry_s=60)) as c:
            first = await c.submit("idle", {})
            task = asyncio.ensure_future(c.submit("idle", {"n": 2}))
            for _ in range(1000):
                if any(p[3] == 503 for p in rec.sent("POST")):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("no 503 within 20 s")
            await first.cancel()
            second = await task
            return [j["id"] async for j in c.list(status="queued")], second
    queued, second = run(main())
    assert queued == [second.id]
    posts = rec.sent("POST")[1:]
    assert posts[0][3] == 503 and posts[-1][3] == 202
    assert len({p[2]["idempotency-key"] for p in posts}) == 1


def test_close_without_context_manager(fleet_stack):
    async def main():
        c = fleet.AsyncClient(fleet_stack.url, fleet_stack.api_key)
        await c.status((await c.submit("echo", {})).id)
        await c.close()
        with pytest.raises(RuntimeError):
            await c.status("0" * 26)
    run(main())
