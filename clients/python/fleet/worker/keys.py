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


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SHARDS_MAX = 8  # FLEET_SHARDS_MAX: the id's first character, 0..7 (a valid ULID)


class Keys:
    """Key names of one shard (fleet_keys_init_tag, shared/include/fleet/shards.h): its
    tag is "{<prefix>}" (shard 0, the layout of a fleet with one shard) or, with tag N,
    "{<prefix>:N}". The fleet's global keys (models, workers, a worker's hash, channels,
    metrics, the shard table) always take the control tag "{<prefix>}", whichever shard's
    Keys spells them, as keys.c spells them."""

    def __init__(self, prefix="fleet", tag=None):
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ValueError("prefix must be 1..32 characters of [A-Za-z0-9_.-]: %r" % (prefix,))
        self.prefix = prefix
        self.control_tag = "{%s}" % prefix
        self.tag = self.control_tag if tag is None or tag < 0 else "{%s:%d}" % (prefix, tag)

    def _k(self, *parts):
        return ":".join((self.tag,) + parts)

    def _c(self, *parts):
        return ":".join((self.control_tag,) + parts)

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
        return self._c("workers")

    def worker(self, name):
        return self._c("worker", name)

    def events(self):
        return self._c("events")

    def models(self):
        return self._c("models")

    def shards(self):
        """The shard table (shards.h), a control string."""
        return self._c("shards")

    def entries(self, model):
        return self._k("entries", model)

    def delayed(self, model):
        return self._k("delayed", model)

    def dlq(self):
        return self._k("dlq")

    def control(self, worker):
        return self._c("control", worker)

    def webhooks(self):
        return self._k("webhooks")

    def delivery_prefix(self):
        return self._k("delivery", "")

    def active_prefix(self):
        return self._k("active", "")

    def waiting(self, model):
        return self._k("waiting", model)

    def metrics(self, model):
        return self._c("metrics", model)


def shard_of_id(job_id):
    """The shard number a job id names: its first character as a Crockford digit."""
    return CROCKFORD.find(job_id[0]) if job_id else -1


def parse_shards(text, prefix):
    """The shard table's text ("k:N:state ..."; None or "": one shard, 0) as
    {k: (Keys, draining)}, as fleet_shards_parse reads it. Raises ValueError for a table
    that does not parse (the caller keeps the table it had)."""
    if not text:
        return {0: (Keys(prefix), False)}
    out, tags = {}, set()
    for ent in text.split():
        parts = ent.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or not 0 <= int(parts[0]) < SHARDS_MAX:
            raise ValueError("shard entry %r is not k:N:state with k in 0..%d"
                             % (ent, SHARDS_MAX - 1))
        k, tag, state = int(parts[0]), parts[1], parts[2]
        if state not in ("active", "draining"):
            raise ValueError("shard %d's state %r is not active or draining" % (k, state))
        if k in out:
            raise ValueError("shard %d is named twice" % k)
        if k == 0:
            if tag != "-":
                raise ValueError("shard 0 has tag \"-\", not %r" % tag)
            n = -1
        else:
            if not tag.isdigit() or int(tag) > 999999 or int(tag) in tags:
                raise ValueError("shard %d's tag %r is not a free number 0..999999" % (k, tag))
            n = int(tag)
            tags.add(n)
        out[k] = (Keys(prefix, n), state == "draining")
    if not any(not d for _, d in out.values()):
        raise ValueError("no shard is active")
    return out
