"""fleet.worker: run a model written in Python in a fleet, next to the C workers.

    from fleet.worker import serve, Retryable

    def handler(inputs, ctx):
        return [{"echo": x} for x in inputs]

    serve("mymodel", handler, redis_url="redis://127.0.0.1:6379")

docs/python.md ("Worker") says what it does at each limit; docs/protocol.md is the
protocol it speaks.
"""
from .serve import Context, OutputRefused, Retryable, Worker, serve

__all__ = ["serve", "Retryable", "OutputRefused", "Context", "Worker"]
