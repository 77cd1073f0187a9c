"""The conformance suite's Python worker: models "echo" and "sleep" written with
fleet.worker, doing what the C worker's built-in models do (worker/models/echo.c,
sleep.c), so that test_conformance.py runs the same cases against both.

    python3 py_models.py echo|sleep      (settings from the environment, as fleet-worker:
    FLEET_REDIS_URL, FLEET_PREFIX, FLEET_LEASE_MS, FLEET_MAX_BATCH, FLEET_MAX_DELAY_MS,
    FLEET_DRAIN_TIMEOUT, FLEET_RETRY_BASE_MS, FLEET_RETRY_MAX_MS, FLEET_WORKER_NAME)
"""
import logging
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fleet.worker import serve  # noqa: E402

SLICE_S = 0.05


def echo(inputs, ctx):
    return inputs


def sleep(inputs, ctx):
    """Every job of the batch side by side: its steps on its own schedule, progress
    "step i of K", a cancel seen within a slice; "fail" fails in the last step."""
    start = time.monotonic()
    outs = [None] * len(inputs)
    active = []
    for i, x in enumerate(inputs):
        if not isinstance(x, dict) or not isinstance(x.get("ms", 0), int):
            ctx.fail(i, 'input must be an object like {"ms": 1000, "steps": 4}')
            continue
        x.setdefault("ms", 0)
        x.setdefault("steps", 1)
        x["next"] = 1
        active.append(i)
    while active:
        now_ms = (time.monotonic() - start) * 1000
        for i in list(active):
            x = inputs[i]
            if ctx.cancelled(i):
                active.remove(i)
                continue
            fails = x.get("fail") and ctx.attempts[i] <= x.get("fail_attempts", 1 << 30)
            while x["next"] <= x["steps"] and x["ms"] * x["next"] / x["steps"] <= now_ms:
                if x["next"] == x["steps"] and fails:
                    x["next"] += 1
                    break
                s = x["next"]
                x["next"] += 1
                if not ctx.progress(i, s, x["steps"], "step %d of %d" % (s, x["steps"])):
                    break
            if x["next"] > x["steps"] and not ctx.cancelled(i):
                if x.get("crash"):
                    os.kill(os.getpid(), signal.SIGKILL)
                if fails:
                    ctx.fail(i, x["fail"], retryable=bool(x.get("retryable")))
                else:
                    outs[i] = {"slept_ms": x["ms"], "steps": x["steps"]}
                active.remove(i)
        if active:
            time.sleep(SLICE_S)
    return outs


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    model = sys.argv[1]
    env = os.environ.get
    serve(model, {"echo": echo, "sleep": sleep}[model],
          redis_url=env("FLEET_REDIS_URL", "redis://127.0.0.1:6379"),
          prefix=env("FLEET_PREFIX", "fleet"),
          name=env("FLEET_WORKER_NAME") or None,
          max_batch=int(env("FLEET_MAX_BATCH", "8")),
          max_delay_ms=int(env("FLEET_MAX_DELAY_MS", "5")),
          lease_ms=int(env("FLEET_LEASE_MS", "30000")),
          drain_timeout_s=float(env("FLEET_DRAIN_TIMEOUT", "25")),
          retry_base_ms=int(env("FLEET_RETRY_BASE_MS", "1000")),
          retry_max_ms=int(env("FLEET_RETRY_MAX_MS", "60000")),
          ready_target=int(env("FLEET_READY_TARGET", "8")))


if __name__ == "__main__":
    main()
