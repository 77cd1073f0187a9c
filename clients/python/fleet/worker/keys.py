"""Redis key names of one fleet, spelled as shared/src/keys.c spells them.

The one place in the Python worker library that builds key names (docs/protocol.md,
"Keys"); tests/test_worker.py checks them against the keys the C gateway and worker write
in a live Redis.
"""
import re

PROTOCOL_VERSION = 6  # FLEET_PROTOCOL_VERSION, shared/include/fleet/keys.h
GROUP = "workers"  # FLEET_GROUP: the consumer group on every model stream
RESULT_SUFFIX = ":result"  # FLEET_KEY_RESULT_SUFFIX
GONE_BUCKET_LEN = 7  # FLEET_GONE_BUCKET_LEN

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")
_MODEL = re.compile(r"[a-z0-9_-]{1,64}\Z")
_WORKER = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_JOB_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}\Z")


def valid_model(name):
    return isinstance(name, str) and bool(_MODEL.match(name))


def valid_worker_name(name):
    return isinstance(name, str) and bool(_WORKER.match(name))


def valid_job_id(job_id):
    """A ULID in Crockford base32, as fleet_job_id_valid (shared/src/id.c) takes it."""
    return isinstance(job_id, str) and bool(_JOB_ID.match(job_id))


class Keys:
    """Key names under the hash tag "{<prefix>}" (fleet_keys_init)."""

    def __init__(self, prefix="fleet"):
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ValueError("prefix must be 1..32 characters of [A-Za-z0-9_.-]: %r" % (prefix,))
        self.tag = "{%s}" % prefix

    def _k(self, *parts):
        return ":".join((self.tag,) + parts)

    def job(self, job_id):
        return self._k("job", job_id)

    def job_prefix(self):
        return self._k("job", "")

    def result(self, job_id):
        return self._k("job", job_id) + RESULT_SUFFIX

    def outputs(self, job_id):
        """The job's partial outputs (emit.lua): a list of "<attempt> <msgpack>"."""
        return self._k("job", job_id, "outputs")

    def gone(self, job_id):
        return self._k("gone", job_id[:GONE_BUCKET_LEN])

    def gone_prefix(self):
        return self._k("gone", "")

    def kept_prefix(self):
        return self._k("kept", "")

    def stream(self, model):
        return self._k("stream", model)

    def queues(self):
        return self._k("queues")

    def stats(self):
        return self._k("stats")

    def workers(self):
        return self._k("workers")

    def worker(self, name):
        return self._k("worker", name)

    def events(self):
        return self._k("events")

    def models(self):
        return self._k("models")

    def entries(self, model):
        return self._k("entries", model)

    def delayed(self, model):
        return self._k("delayed", model)

    def dlq(self):
        return self._k("dlq")

    def control(self, worker):
        return self._k("control", worker)

    def webhooks(self):
        return self._k("webhooks")

    def delivery_prefix(self):
        return self._k("delivery", "")

    def active_prefix(self):
        return self._k("active", "")

    def waiting(self, model):
        return self._k("waiting", model)

    def metrics(self, model):
        return self._k("metrics", model)
