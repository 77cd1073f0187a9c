"""Measures the Python client against a throwaway stack (conftest.FleetStack: Redis, a
gateway with API keys on, one echo worker) from the build named by FLEET_BIN_DIR:

    FLEET_BIN_DIR=build-rel/bin /usr/bin/python3 clients/python/tests/bench_client.py [N]

1. N sequential Client.submit_and_wait("echo", ...): latency per job (median, p95) and
   HTTP requests per job, counted by the gateway (/metrics); the submit long-polls, so a
   short job costs one;
2. the same with httpx's plain HTTPTransport instead of the client's own (no
   TCP_NODELAY): what a POST costs without it;
3. N AsyncClient.submit_and_wait at once (asyncio.gather): jobs per second.
Not a test (pytest does not collect it): figures for docs/python.md.
"""
import asyncio
import os
import statistics
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fleet  # noqa: E402
from conftest import FleetStack  # noqa: E402

REQUESTS = 'fleet_http_requests_total{route="/v1/'


def sequential(s: FleetStack, n: int, label: str, transport=None) -> None:
    before = s.metric(REQUESTS)
    lat = []
    with fleet.Client(s.url, s.api_key, transport=transport) as c:
        for i in range(n):
            t0 = time.perf_counter()
            assert c.submit_and_wait("echo", {"i": i, "pad": "x" * 180})["i"] == i
            lat.append(time.perf_counter() - t0)
    lat.sort()
    print(f"{label}: sync submit_and_wait x{n}: median {statistics.median(lat) * 1e3:.2f} ms, "
          f"p95 {lat[int(n * 0.95) - 1] * 1e3:.2f} ms, "
          f"{(s.metric(REQUESTS) - before) / n:.2f} requests per job")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    s = FleetStack(workers=["echo"])
    try:
        sequential(s, n, "the client's transport")
        sequential(s, n, "httpx.HTTPTransport()", httpx.HTTPTransport())

        async def many() -> float:
            async with fleet.AsyncClient(s.url, s.api_key) as ac:
                t0 = time.perf_counter()
                await asyncio.gather(*(ac.submit_and_wait("echo", {"i": i}) for i in range(n)))
                return time.perf_counter() - t0
        dt = asyncio.run(many())
        print(f"async submit_and_wait x{n} at once: {dt:.2f} s, {n / dt:.0f} jobs/s")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
