"""fleet.worker.serve: runs a model written in Python in the same fleet as the C workers.

It speaks docs/protocol.md through redis-py, as fleet-worker does (worker/loop.c,
batch_run.c, keeper.c, control.c, health.c):

- the main thread loops: promote due retries (every 250 ms), take over entries of lost
  workers (XAUTOCLAIM every clamp(lease_ms / 4, 1 s, 5 s), `recover` for deleted ones),
  then one pipeline of `feed` and a `claim` with the taken-over entries and read slots;
  when that finds nothing it blocks in XREADGROUP for a second and claims what came;
- the handler runs the batch on a thread of its own, so the main thread can watch it:
  cancels, timeouts, a lost lease and the drain deadline;
- the keeper thread renews the running jobs' leases every min(lease_ms / 3, 1 s) until
  their final write has an answer, writes the heartbeat every 2 s, the metrics report
  every 5 s, and deletes long-idle consumers with nothing pending;
- the control thread listens on `{prefix}:control:<name>` for `cancel <id>`.

A fleet spread over shards (shared/include/fleet/shards.h: the table at "{prefix}:shards",
read again every 2 s) is served on every shard of the table, as the C worker serves it:
a consumer group on each shard's stream of the model, each turn starting at the next shard
(so that none starves behind another's backlog), a batch filled from several shards, and
every script of a job sent with the keys of the shard its id names (its first character).
Idle, one XREADGROUP blocks on every shard's stream at once on one Redis; on a Redis
Cluster (cluster=, FLEET_REDIS_CLUSTER: redis-py's RedisCluster) the streams live on
different nodes, so it blocks on one shard at a time for READ_SLICE_MS, rotating.
Registration, heartbeats, metrics and the control channel use the control keys.

Results are written with one `finish` per batch; a Retryable error requeues each job with
the C worker's backoff; SIGTERM or SIGINT stops reading, lets the batch finish for
drain_timeout_s, hands back what still runs and deregisters.
"""
import json
import logging
import os
import random
import signal
import socket
import threading
import time

import redis
import redis.cluster
import redis.connection
import redis.sentinel

from . import keys as fkeys
from . import msgpack
from . import scripts

log = logging.getLogger("fleet.worker")

PROMOTE_MS = 250
PROMOTE_MAX = 100
HEARTBEAT_MS = 2000
HEARTBEAT_SLOW_MS = 8000
WORKER_KEY_TTL_S = 30
WORKER_GONE_MS = 60000
METRICS_FLUSH_MS = 5000
METRICS_TTL_S = 604800
CONTROL_WAIT_S = 2.0
READ_BLOCK_MS = 1000
READ_SLICE_MS = 100  # a cluster of several shards: each shard's blocking read, in turn
SHARDS_RELOAD_MS = 2000  # the shard table read again (the C worker: every keeper tick)
ERROR_PAUSE_S = 1.0
TIMEOUT_GRACE_MS = 5000
HEALTH_LOOK_MS = 10000  # INFO memory while claims are allowed (worker/health.c)
HELD_LOOK_MS = 1000  # while claims are held
POLICY_LOG_MS = 60000
PROGRESS_MESSAGE_MAX = 200
FINISH_ERROR_MAX = 511  # FLEET_MODEL_ERROR_MAX (worker/model.h) less its NUL
REQUEUE_ERROR_MAX = 300
FINISH_MAX_JOBS = 35  # jobs per finish call, as the C builder (docs/protocol.md, "finish")
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 2.0

# Answers that mean "refused for now; the script did not run" (docs/protocol.md, "Errors").
_REFUSED = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM")

# Histogram bounds of worker/metrics.c (wait and run in ms, batch in jobs).
_WAIT_LE = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
            300000, 600000, 1800000, 3600000, 7200000, 21600000)
_RUN_LE = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
           300000, 600000, 1800000, 3600000, 7200000)
_BATCH_LE = tuple(1 << i for i in range(20))


class OutputRefused(Exception):
    """Raised by ctx.emit when an output was not stored: over the job's limits
    (max_outputs, max_output_bytes), not serialisable, or Redis refused or was unreachable.
    The job goes on and may still finish."""


class Retryable(Exception):
    """Raised by a handler for a transient failure: every job of the batch is requeued with
    a backoff (retry_base_ms x 2^(attempt-1), at most retry_max_ms, jittered down to half)
    and runs again, until its max_attempts are used; then it fails and is dead-lettered."""


def _mono_ms():
    return int(time.monotonic() * 1000)


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


def _utf8_cut(s, limit):
    """s encoded as UTF-8, cut to at most `limit` bytes on a character boundary."""
    b = s.encode("utf-8", "replace")
    if len(b) <= limit:
        return b
    b = b[:limit]
    return b.decode("utf-8", "ignore").encode("utf-8")


def _refused(err):
    """True when err is a refusal for now: the command did not run, send it again."""
    if isinstance(err, redis.exceptions.BusyLoadingError):
        return True
    if isinstance(err, redis.exceptions.ReadOnlyError):
        return True
    if not isinstance(err, redis.exceptions.ResponseError):
        return False
    msg = str(err)
    if msg.startswith(_REFUSED):
        return True
    return "-OOM" in msg or "OOM command not allowed" in msg  # Redis 6's wrapped script error


def _is_error(rep):
    return isinstance(rep, Exception)


def _timeout_error(j):
    # The C worker's text (worker/batch_run.c), so a job reads the same from either worker.
    return "the job ran longer than its timeout_s of %d seconds" % int(j.timeout_s)


class _Hist:
    def __init__(self, bounds):
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0

    def observe(self, v):
        b = 0
        while b < len(self.bounds) and v > self.bounds[b]:
            b += 1
        self.buckets[b] += 1
        self.count += 1
        self.sum += max(v, 0)

    def fields(self, name, ms):
        out = []
        for b, n in enumerate(self.buckets):
            if not n:
                continue
            if b < len(self.bounds):
                le = "%g" % (self.bounds[b] / 1000.0) if ms else "%d" % self.bounds[b]
            else:
                le = "+Inf"
            out.append(("%s:%s" % (name, le), n))
        if self.count:
            out.append(("%s:%s" % (name, "sum_ms" if ms else "sum"), self.sum))
            out.append(("%s:count" % name, self.count))
        return out

    def add(self, other):
        for b, n in enumerate(other.buckets):
            self.buckets[b] += n
        self.count += other.count
        self.sum += other.sum


class _Job:
    """One claimed job of the running batch."""

    def __init__(self, sh, entry_id, job_id, token, reply, default_timeout_s):
        self.sh = sh  # the _Shard it was claimed on: every script of the job goes there
        self.entry_id = entry_id
        self.id = job_id
        self.token = token
        self.raw_input = reply[1]
        self.attempts = int(reply[2])
        t = float(_text(reply[3]) or 0)
        self.timeout_s = t if t > 0 else default_timeout_s
        self.reclaimed = int(reply[4]) != 0
        self.created_ms = int(_text(reply[5]) or 0)
        self.started_ms = int(_text(reply[6]) or 0)
        self.started_mono = _mono_ms()
        self.cancel = False  # a cancel was requested (control channel, renew, progress)
        self.stale = False  # the lease is lost: drop everything of this job
        self.timed_out = False
        self.seen_cancel = False  # the handler was told (ctx.cancelled answered True)
        self.failed = None  # ctx.fail's message
        self.retryable = False  # ctx.fail(..., retryable=True)
        self.ended = False  # the final write has an answer
        self.last_progress_mono = None
        self.pending_progress = None  # progress Redis refused, sent before the finish


class _Shard:
    """One shard of the table as this worker serves it: its keys, its stream of the model
    and the state of its consumer group."""

    def __init__(self, k, keys, model):
        self.k = k
        self.keys = keys
        self.stream = keys.stream(model)
        self.group_ok = False
        self.group_epoch = -1
        self.cursor = "0-0"  # XAUTOCLAIM's
        self.next_promote = 0
        self.next_reclaim = 0


class Context:
    """What a handler gets with its inputs: `ctx.progress`, `ctx.emit`, `ctx.cancelled`,
    `ctx.fail`, and per job `ctx.job_ids`, `ctx.attempts`."""

    def __init__(self, worker, jobs):
        self._w = worker
        self._jobs = jobs
        self.job_ids = [j.id for j in jobs]
        self.attempts = [j.attempts for j in jobs]
        self.worker_name = worker.name

    def _job(self, index):
        if not isinstance(index, int) or not 0 <= index < len(self._jobs):
            raise IndexError("job index %r out of range 0..%d" % (index, len(self._jobs) - 1))
        return self._jobs[index]

    def cancelled(self, index):
        """True when job `index` should stop: a cancel was requested, its timeout passed,
        its lease was lost, or the worker's drain time ran out. A job the handler was told
        so ends as the library decides (cancelled, failed, nothing or handed back),
        whatever output the handler still returns for it."""
        j = self._job(index)
        stop = j.cancel or j.stale or j.timed_out or self._w._drain_expired
        if stop:
            j.seen_cancel = True
        return stop

    def progress(self, index, done, total, message=""):
        """Reports progress of job `index`: `done` of `total` steps, and a message (cut to
        200 bytes). Written at most every progress_interval_ms per job, except the last
        step (done >= total). Returns False when the job should stop (as cancelled())."""
        j = self._job(index)
        done, total = int(done), int(total)
        pct = 100.0 * done / total if total > 0 else 0.0
        pct = min(max(pct, 0.0), 100.0)
        p = ("%.4g" % pct, _utf8_cut(str(message or ""), PROGRESS_MESSAGE_MAX), done, total)
        now = _mono_ms()
        last = done >= total
        if not last and j.last_progress_mono is not None and \
                now - j.last_progress_mono < self._w.progress_interval_ms:
            return not self.cancelled(index)
        j.last_progress_mono = now
        self._w._write_progress(j, p)
        return not self.cancelled(index)

    def emit(self, index, output):
        """Stores one partial output of job `index` at once, after the job's earlier ones
        (docs/protocol.md, "emit"): clients read it while the job runs. Returns True when
        stored and the job goes on, False when the job should stop (a cancel was requested:
        the output was stored; or the lease was lost: it was not). Raises OutputRefused
        when it was not stored and the job goes on."""
        j = self._job(index)
        if self.cancelled(index):
            return False
        try:
            data = msgpack.packb(output)
        except (msgpack.MsgpackError, UnicodeEncodeError) as e:
            raise OutputRefused("output not stored: not serialisable: %s" % e) from None
        return self._w._emit(j, data)

    def fail(self, index, message, retryable=False):
        """Fails job `index` with `message`, whatever output is returned for it: for good,
        or with retryable=True requeued with the backoff (as Retryable, for one job)."""
        j = self._job(index)
        j.failed = str(message) or "failed"
        j.retryable = bool(retryable)


def _cluster_nodes(cluster):
    if isinstance(cluster, str):
        nodes = []
        for item in cluster.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("cluster node %r is not host:port" % (item,))
            nodes.append((host, int(port)))
        return nodes
    return [(h, int(p)) for h, p in cluster]


def _connect(redis_url, sentinels=None, sentinel_master=None, sentinel_password=None,
             cluster=None):
    """The worker's client: with cluster (seed nodes "host:port,..." or a list of
    (host, port); default FLEET_REDIS_CLUSTER), a RedisCluster with redis_url's user and
    password (its host is then not used, its database must be 0); else redis_url's
    server, or, with sentinels ("host:port,..." or a
    list of (host, port); default FLEET_REDIS_SENTINELS, FLEET_REDIS_SENTINEL_MASTER and
    FLEET_REDIS_SENTINEL_PASSWORD, as the C programs read them), the primary they name,
    with redis_url's user, password and database (its host is then not used).
    redis-py's Sentinel pool asks the sentinels again at every new connection, and drops a
    connection whose server answers READONLY (a primary demoted while alive)."""
    if sentinels is None:
        sentinels = os.environ.get("FLEET_REDIS_SENTINELS", "")
    if sentinel_master is None:
        sentinel_master = os.environ.get("FLEET_REDIS_SENTINEL_MASTER", "")
    if sentinel_password is None:
        sentinel_password = os.environ.get("FLEET_REDIS_SENTINEL_PASSWORD", "")
    if cluster is None:
        cluster = os.environ.get("FLEET_REDIS_CLUSTER", "")
    timeouts = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if cluster:
        if sentinels:
            raise ValueError("a cluster has no sentinels: give cluster or sentinels, not both")
        url = redis.connection.parse_url(redis_url)
        if int(url.get("db", 0) or 0) != 0:
            raise ValueError("a Redis Cluster has database 0 only: %s names another" % redis_url)
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in _cluster_nodes(cluster)]
        return redis.cluster.RedisCluster(startup_nodes=nodes, username=url.get("username"),
                                          password=url.get("password"), **timeouts)
    if not sentinels:
        if sentinel_master:
            raise ValueError("sentinel_master without sentinels")
        return redis.Redis.from_url(redis_url, health_check_interval=0, **timeouts)
    if not sentinel_master:
        raise ValueError("sentinels without sentinel_master (FLEET_REDIS_SENTINEL_MASTER)")
    if isinstance(sentinels, str):
        hosts = []
        for item in sentinels.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("sentinel %r is not host:port" % (item,))
            hosts.append((host, int(port)))
    else:
        hosts = [(h, int(p)) for h, p in sentinels]
    url = redis.connection.parse_url(redis_url)
    s = redis.sentinel.Sentinel(
        hosts, sentinel_kwargs={"password": sentinel_password or None, **timeouts}, **timeouts)
    return s.master_for(sentinel_master, username=url.get("username"),
                        password=url.get("password"), db=url.get("db", 0), **timeouts)


class Worker:
    def __init__(self, model, handler, *, redis_url, max_batch=8, max_delay_ms=5,
                 lease_ms=30000, prefix="fleet", name=None, drain_timeout_s=25.0,
                 timeout_s=0, retry_base_ms=1000, retry_max_ms=60000, ready_target=8,
                 dlq_cap=10000, progress_interval_ms=200, consumer_idle_ms=600000,
                 max_outputs=1000, max_output_bytes=1048576, output_webhook_ms=1000,
                 allow_eviction=False, backend="python", sentinels=None, sentinel_master=None,
                 sentinel_password=None, cluster=None):
        if not fkeys.valid_model(model):
            raise ValueError("model must be 1..64 characters of [a-z0-9_-]: %r" % (model,))
        if not callable(handler):
            raise TypeError("handler must be callable: handler(inputs, ctx) -> outputs")
        if not 1 <= int(max_batch) <= 256:
            raise ValueError("max_batch must be 1..256")
        if int(lease_ms) < 1000:
            raise ValueError("lease_ms must be at least 1000")
        self.model = model
        self.handler = handler
        self.keys = fkeys.Keys(prefix)
        self.host = socket.gethostname()
        if name is None:
            h = "".join(c if c.isalnum() or c in "_.-" else "-" for c in self.host)[:40]
            name = "%s-%d-%s" % (h or "worker", os.getpid(), os.urandom(2).hex())
        if not fkeys.valid_worker_name(name):
            raise ValueError("name must be 1..64 characters of [A-Za-z0-9_.-]: %r" % (name,))
        self.name = name
        self.max_batch = int(max_batch)
        self.max_delay_ms = int(max_delay_ms)
        self.lease_ms = int(lease_ms)
        self.drain_timeout_s = float(drain_timeout_s)
        self.timeout_s = float(timeout_s)
        self.retry_base_ms = int(retry_base_ms)
        self.retry_max_ms = int(retry_max_ms)
        self.ready_target = int(ready_target)
        self.dlq_cap = max(int(dlq_cap), 1)
        self.progress_interval_ms = int(progress_interval_ms)
        self.consumer_idle_ms = int(consumer_idle_ms)
        self.backend = backend
        self.max_outputs = int(max_outputs)
        self.max_output_bytes = int(max_output_bytes)
        self.output_webhook_ms = int(output_webhook_ms)
        self.allow_eviction = bool(allow_eviction)
        self._next_look = 0
        self._held = False
        self._policy = None
        self._policy_logged = 0
        self._full = False
        # One pool: redis-py hands each thread its own connection per command.
        self.r = _connect(redis_url, sentinels, sentinel_master, sentinel_password, cluster)
        self.clustered = isinstance(self.r, redis.cluster.RedisCluster)
        self.redis_url = redis_url
        # The pool reconnects by itself (a connection the server closed is replaced when
        # taken), so "after each reconnect" (docs/protocol.md: the consumer group, the
        # model's registration, the health look) is told by a count of connects. A
        # cluster's pools are per node: there a lost connection (an error the loop sees)
        # redoes them instead.
        self._conn_epoch = 0
        if not self.clustered:
            make = self.r.connection_pool.make_connection

            def make_connection():
                c = make()
                c.register_connect_callback(self._on_connect)
                return c
            self.r.connection_pool.make_connection = make_connection
        # The shards served (by k), in ascending k; shard 0 alone until the table is read.
        self._shards = {0: _Shard(0, self.keys, model)}
        self._order = [0]
        self._rr = 0  # the shard the next turn starts at
        self._next_table = 0
        self._table_text = None
        self.stream = self.keys.stream(model)  # shard 0's
        self.s = {n: scripts.get(n) for n in
                  ("claim", "renew", "progress", "emit", "finish", "requeue", "promote", "feed",
                   "recover")}
        self._mu = threading.Lock()
        self._running = []  # jobs whose final write has no answer yet (renewed by the keeper)
        self._by_id = {}
        self._stop_reading = threading.Event()
        self._quit = threading.Event()
        self._signals = 0
        self._drain_deadline = None
        self._drain_expired = False
        self._backoff_s = 0.0
        self._jobs_done = 0
        self._busy = False
        self._started_ms = int(time.time() * 1000)
        self._registered = -1  # the connect count it last registered at
        self._wait_h, self._run_h, self._batch_h = _Hist(_WAIT_LE), _Hist(_RUN_LE), _Hist(_BATCH_LE)
        self._last_full = False
        self._subscribed = threading.Event()

    # ------------------------------------------------------------------ redis helpers

    def _on_connect(self, conn):
        self._conn_epoch += 1

    def _pause_refused(self, what, err):
        self._backoff_s = min(max(self._backoff_s * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
        log.warning("Redis refused %s for now (%s); retrying in %.1f s", what, err, self._backoff_s)
        time.sleep(self._backoff_s)

    def _ok(self):
        self._backoff_s = 0.0

    def _ensure_group(self, sh):
        try:
            self.r.xgroup_create(sh.stream, fkeys.GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if not str(e).startswith("BUSYGROUP"):
                raise
        sh.group_ok = True
        sh.group_epoch = self._conn_epoch

    def _groups_lost(self):
        for sh in self._shards.values():
            sh.group_ok = False

    def _stream_error(self, what, e, sh=None):
        if isinstance(e, redis.exceptions.ResponseError) and str(e).startswith("NOGROUP"):
            log.warning("consumer group missing; recreating it (%s)",
                        sh.stream if sh else "every shard's stream")
            if sh:
                sh.group_ok = False
            else:
                self._groups_lost()
        elif _refused(e):
            self._pause_refused(what, e)
        else:
            log.error("%s failed: %s", what, e)
            time.sleep(ERROR_PAUSE_S)

    # ------------------------------------------------------------------ the loop

    def serve(self, install_signals=True):
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        keeper = threading.Thread(target=self._keeper, name="fleet-keeper", daemon=True)
        control = threading.Thread(target=self._control, name="fleet-control", daemon=True)
        control.start()
        keeper.start()
        # A cancel published before the subscription would be lost: wait for it a while.
        self._subscribed.wait(CONTROL_WAIT_S)
        log.info("worker %s serving model %s (max_batch %d, lease %d ms)", self.name,
                 self.model, self.max_batch, self.lease_ms)
        try:
            while not self._stop_reading.is_set():
                try:
                    self._turn()
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
                    log.warning("Redis connection lost (%s); reconnecting", e)
                    self._groups_lost()
                    if self.clustered:
                        self._registered = -1  # a node may have restarted empty
                    self._next_look = 0  # a new server may have another policy: look again
                    time.sleep(ERROR_PAUSE_S)
                except redis.exceptions.ResponseError as e:
                    # A stream command refused (an XACK of a bad entry, ...): what it left
                    # pending is taken over after a lease; do not loop on it at once.
                    self._stream_error("a Redis command", e)
        finally:
            self._quit.set()
            keeper.join(timeout=10)
            self._deregister()
            self._flush_metrics(force=True)
            log.info("worker %s stopped", self.name)

    def stop(self):
        """Asks the worker to stop as SIGTERM does (drain, then hand back)."""
        self._on_signal(signal.SIGTERM, None)

    def _on_signal(self, signum, frame):
        self._signals += 1
        if self._signals == 1:
            self._drain_deadline = time.monotonic() + self.drain_timeout_s
            log.info("stopping: no more reads; draining the batch for up to %.0f s",
                     self.drain_timeout_s)
        else:
            self._drain_deadline = time.monotonic()  # a second signal ends the drain at once
        self._stop_reading.set()

    def _load_shards(self):
        """Reads the shard table again (every SHARDS_RELOAD_MS): shards new to the table are
        served from now on, those it no longer names are left (a shard is removed only
        once it holds no queued or running job). A table that does not parse keeps the
        shards served so far."""
        now = _mono_ms()
        if now < self._next_table:
            return
        self._next_table = now + SHARDS_RELOAD_MS
        try:
            text = self.r.get(self.keys.shards())
        except redis.exceptions.ResponseError as e:
            # Refused for now, or not allowed (an ACL without the key): serve the shards
            # known so far and read it again later.
            log.warning("reading the shard table %s was refused: %s", self.keys.shards(), e)
            return
        text = _text(text) if text is not None else ""
        if text == self._table_text:
            return
        try:
            table = fkeys.parse_shards(text, self.keys.prefix)
        except ValueError as e:
            if self._table_text is not None or text:
                log.error("the shard table %s does not parse (%s): %r; serving the shards "
                          "read before", self.keys.shards(), e, text)
            self._table_text = text
            return
        shards = {}
        for k, (keys, _) in table.items():
            old = self._shards.get(k)
            shards[k] = old if old is not None and old.keys.tag == keys.tag else \
                _Shard(k, keys, self.model)
        if sorted(shards) != self._order:
            log.info("serving shards %s", " ".join(shards[k].keys.tag for k in sorted(shards)))
        self._shards = shards
        self._order = sorted(shards)
        self._table_text = text

    def _turn_order(self):
        """The shards, starting at the next one each turn."""
        n = len(self._order)
        start = self._rr % n
        self._rr += 1
        return [self._shards[k] for k in self._order[start:] + self._order[:start]]

    def _turn(self):
        self._load_shards()
        for sh in self._shards.values():
            if sh.group_epoch != self._conn_epoch:
                sh.group_ok = False  # a new connection: maybe a server restarted empty
                self._next_look = 0
        for sh in self._shards.values():
            if not sh.group_ok:
                try:
                    self._ensure_group(sh)
                except redis.exceptions.ResponseError as e:
                    self._stream_error("XGROUP CREATE", e, sh)  # the others still serve
        for sh in self._shards.values():
            self._promote(sh)
        if not self._may_claim():
            time.sleep(HELD_LOOK_MS / 1000.0)
            return
        order = [sh for sh in self._turn_order() if sh.group_ok]
        if not order:
            return
        jobs = []
        for sh in order:
            room = self.max_batch - len(jobs)
            if room <= 0:
                break
            named = self._reclaim(sh, room)
            jobs += self._claim(sh, named, room - len(named))
        if not jobs and not self._stop_reading.is_set():
            for sh, entries in self._xread(order):
                jobs += self._claim(sh, entries, 0)
            if jobs and self._stop_reading.is_set():
                # Read just as the stop came: hand them back at once rather than leave
                # them pending on this consumer for a lease.
                self._write_outcomes([], [(j, "handback", "") for j in jobs])
                return
        elif jobs and self._last_full and len(jobs) < self.max_batch and self.max_delay_ms > 0:
            # Under load a fuller batch is worth a few milliseconds (docs/protocol.md).
            time.sleep(self.max_delay_ms / 1000.0)
            for sh in order:
                room = self.max_batch - len(jobs)
                if room <= 0:
                    break
                jobs += self._claim(sh, [], room)
        if jobs:
            self._last_full = len(jobs) >= self.max_batch
            self._run_batch(jobs)

    def _may_claim(self):
        """False while Redis' maxmemory-policy evicts keys (every fleet key has a TTL, so a
        volatile policy deletes jobs too) and allow_eviction is off, or while Redis is full
        (a claimed job could not be finished). INFO memory, as the C worker reads it: every
        10 s, every second while claims are held."""
        now = _mono_ms()
        if now < self._next_look:
            return not self._held
        try:
            info = self._memory_info()
        except redis.exceptions.ResponseError as e:
            if _refused(e):
                raise  # the loop pauses and looks again
            info = {}  # not allowed to look (an ACL): run, as the C worker does
        policy = info.get("maxmemory_policy")
        if policy is None:
            if self._policy is None:
                log.warning("INFO memory shows no maxmemory_policy; cannot check that Redis "
                            "keeps jobs when it is full")
                self._policy = ""
            self._held = False  # cannot tell: run, as the C worker does
            self._next_look = now + HEALTH_LOOK_MS
            return True
        policy = _text(policy)
        evicts = policy != "noeviction"
        if policy != self._policy:
            self._policy_logged = 0
            if not evicts and self._policy is not None:
                log.info("redis maxmemory-policy is now noeviction")
            self._policy = policy
        if evicts and (not self._policy_logged or now - self._policy_logged >= POLICY_LOG_MS):
            self._policy_logged = now
            if self.allow_eviction:
                log.warning("redis maxmemory-policy %s evicts keys: a full Redis will delete "
                            "jobs and their inputs (allow_eviction is on)", policy)
            else:
                log.error("redis maxmemory-policy %s evicts keys: a full Redis would delete "
                          "jobs and their inputs; set maxmemory-policy noeviction (or "
                          "allow_eviction=True to accept it); claiming nothing", policy)
        maxmem, used = int(info.get("maxmemory", 0)), int(info.get("used_memory", 0))
        full = maxmem > 0 and used >= maxmem
        if full and not self._full:
            log.warning("redis is full (used_memory %d at maxmemory %d): taking no new jobs",
                        used, maxmem)
        elif self._full and not full:
            log.info("redis has room again: taking jobs")
        self._full = full
        self._held = full or (evicts and not self.allow_eviction)
        self._next_look = now + (HELD_LOOK_MS if self._held else HEALTH_LOOK_MS)
        return not self._held

    def _memory_info(self):
        """INFO memory of the Redis, or on a cluster of its masters folded into one: the
        first evicting policy found, and the fullest master's use of its maxmemory (a job
        on any shard may need a write there)."""
        if not self.clustered:
            return self.r.info("memory")
        infos = self.r.info("memory", target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        if isinstance(infos, dict) and "maxmemory_policy" in infos:
            return infos
        out = {}
        for info in (infos or {}).values():
            if not isinstance(info, dict) or "maxmemory_policy" not in info:
                continue
            policy = _text(info["maxmemory_policy"])
            if "maxmemory_policy" not in out or policy != "noeviction":
                out["maxmemory_policy"] = policy
            maxmem, used = int(info.get("maxmemory", 0)), int(info.get("used_memory", 0))
            if maxmem > 0 and ("maxmemory" not in out or used - maxmem > out["used_memory"] -
                               out["maxmemory"] or not out["maxmemory"]):
                out["maxmemory"], out["used_memory"] = maxmem, used
            out.setdefault("maxmemory", 0)
            out.setdefault("used_memory", 0)
        return out

    def _promote(self, sh):
        now = _mono_ms()
        if now < sh.next_promote:
            return
        sh.next_promote = now + PROMOTE_MS
        k = sh.keys
        try:
            self.s["promote"](self.r, [k.delayed(self.model), sh.stream, k.queues(),
                                       k.entries(self.model), k.stats()],
                              [self.model, PROMOTE_MAX, k.job_prefix()])
        except redis.exceptions.ResponseError as e:
            if not _refused(e):
                log.error("promote script failed: %s", e)

    def _reclaim(self, sh, count):
        now = _mono_ms()
        if now < sh.next_reclaim:
            return []
        sh.next_reclaim = now + min(max(self.lease_ms // 4, 1000), 5000)
        try:
            rep = self.r.execute_command("XAUTOCLAIM", sh.stream, fkeys.GROUP, self.name,
                                         self.lease_ms, sh.cursor, "COUNT", count)
        except redis.exceptions.ResponseError as e:
            self._stream_error("XAUTOCLAIM", e, sh)
            return []
        if not isinstance(rep, list) or len(rep) < 2:
            return []
        sh.cursor = _text(rep[0])
        out = self._entries(sh, rep[1])
        for deleted in (rep[2] if len(rep) >= 3 and isinstance(rep[2], list) else []):
            self._recover(sh, _text(deleted))
        return out

    def _recover(self, sh, entry_id):
        k = sh.keys
        while True:
            try:
                rep = self.s["recover"](self.r, [k.entries(self.model), sh.stream, k.queues(),
                                                 k.stats()], [entry_id, self.model, k.job_prefix()])
                log.warning("a pending stream entry was deleted by hand: %s",
                            [_text(x) for x in rep] if isinstance(rep, list) else rep)
                return
            except redis.exceptions.ResponseError as e:
                # XAUTOCLAIM forgot the entry already: this call is the job's only way back.
                if not _refused(e) or self._quit.is_set():
                    log.error("recover of entry %s failed: %s", entry_id, e)
                    return
                self._pause_refused("recover", e)

    def _entries(self, sh, arr):
        """[(entry id, job id)] of XREADGROUP / XAUTOCLAIM entries of shard sh's stream;
        drops invalid ones."""
        out = []
        for e in arr or []:
            if not isinstance(e, (list, tuple)) or len(e) != 2 or e[0] is None:
                continue
            entry_id = _text(e[0])
            fields = e[1]
            job = None
            if isinstance(fields, dict):
                job = fields.get(b"job")
            elif isinstance(fields, (list, tuple)):
                for i in range(0, len(fields) - 1, 2):
                    if fields[i] == b"job":
                        job = fields[i + 1]
            job = _text(job) if job is not None else None
            if not fkeys.valid_job_id(job):
                log.warning("stream entry without a valid job id dropped: %s", entry_id)
                self.r.xack(sh.stream, fkeys.GROUP, entry_id)
                self.r.xdel(sh.stream, entry_id)
                continue
            out.append((entry_id, job))
        return out

    def _xread(self, order):
        """Blocks for new entries: [(shard, [(entry id, job id)])], at most max_batch in
        all. On one Redis one XREADGROUP waits on every shard's stream (READ_BLOCK_MS; with
        more shards than max_batch, on the first max_batch of this turn's order); on a
        cluster of several shards it waits on the first of this turn's order for
        READ_SLICE_MS (the next turn starts at the next shard)."""
        if self.clustered and len(order) > 1:
            order, block_ms = order[:1], READ_SLICE_MS
        else:
            block_ms = READ_BLOCK_MS
        # COUNT is per stream: split max_batch over the streams, so that what one read
        # returns, all of it claimed at once, is never more than a batch.
        order = order[:self.max_batch]
        count = self.max_batch // len(order)
        args = ["XREADGROUP", "GROUP", fkeys.GROUP, self.name, "COUNT", count, "BLOCK",
                block_ms, "STREAMS"] + [sh.stream for sh in order] + [">"] * len(order)
        try:
            rep = self.r.execute_command(*args)
        except redis.exceptions.ResponseError as e:
            self._stream_error("XREADGROUP", e, order[0] if len(order) == 1 else None)
            return []
        if not rep:
            return []
        items = list(rep.items()) if isinstance(rep, dict) else rep  # RESP3 answers a map
        by_stream = {sh.stream: sh for sh in order}
        out = []
        for item in items:
            sh = by_stream.get(_text(item[0]))
            if sh is not None:
                entries = self._entries(sh, item[1])
                if entries:
                    out.append((sh, entries))
        return out

    def _claim_cmd(self, sh, slots):
        k = sh.keys
        keys = [sh.stream, k.queues(), k.stats(), k.entries(self.model), k.dlq(), k.webhooks()]
        args = [fkeys.GROUP, self.name, self.lease_ms, self.model, k.events(), self.dlq_cap,
                k.delivery_prefix(), k.active_prefix(), k.job_prefix(), k.gone_prefix(),
                k.kept_prefix()]
        for entry_id, job_id, token in slots:
            args += [entry_id, job_id, token]
        return (self.s["claim"], keys, args)

    def _claim(self, sh, named, read_slots):
        """Claims the named entries of shard sh and up to read_slots new ones there (after a
        feed), sending again with the same tokens what Redis refused for now. Returns the
        jobs to run."""
        if self._stop_reading.is_set():
            read_slots = 0  # a stopping worker reads nothing new; taken-over ones still run
        slots = [(e, j, os.urandom(16).hex()) for e, j in named]
        slots += [("", "", os.urandom(16).hex()) for _ in range(max(read_slots, 0))]
        if not slots:
            return []
        k = sh.keys
        while True:
            calls = []
            if read_slots > 0:
                feed_keys = [sh.stream, k.waiting(self.model), k.entries(self.model), k.queues()]
                feed_args = [max(self.max_batch, self.ready_target), fkeys.GROUP, self.model]
                calls.append((self.s["feed"], feed_keys, feed_args))
            calls.append(self._claim_cmd(sh, slots))
            replies = scripts.run_pipeline(self.r, calls)
            if read_slots > 0 and _is_error(replies[0]) and not _refused(replies[0]):
                log.error("feed script failed: %s", replies[0])
            rep = replies[-1]
            if _is_error(rep) and _refused(rep):
                if self._stop_reading.is_set() and not named:
                    return []
                self._pause_refused("claim", rep)
                continue
            self._ok()
            break
        if _is_error(rep):
            self._stream_error("claim", rep, sh)
            return []
        jobs = []
        nnamed = len(named)
        for i, (entry_id, job_id, token) in enumerate(slots[:nnamed]):
            if i < len(rep):
                self._claim_one(sh, entry_id, job_id, token, rep[i], jobs)
        for i in range(nnamed, len(rep)):
            item = rep[i]
            if not isinstance(item, list) or len(item) != 3:
                log.error("claim reply: a read item of an unexpected shape")
                continue
            entry_id, job_id = _text(item[0]), _text(item[1])
            if not job_id:
                log.warning("stream entry without a valid job id dropped: %s", entry_id)
                continue
            self._claim_one(sh, entry_id, job_id, slots[i][2], item[2], jobs)
        return jobs

    def _claim_one(self, sh, entry_id, job_id, token, rep, jobs):
        if not isinstance(rep, list) or not rep:
            log.error("claim reply for job %s of an unexpected shape", job_id)
            return
        tag = _text(rep[0])
        if tag == "ok" and len(rep) == 7:
            j = _Job(sh, entry_id, job_id, token, rep, self.timeout_s)
            if j.reclaimed:
                log.warning("took over job %s whose worker was lost (attempt %d)", job_id,
                            j.attempts)
            jobs.append(j)
        elif tag == "dead":
            log.warning("job %s failed and was dead-lettered: %s", job_id,
                        _text(rep[1]) if len(rep) > 1 else "")
        else:
            log.debug("job %s not claimed: %s", job_id, [_text(x) for x in rep])

    # ------------------------------------------------------------------ running a batch

    def _run_batch(self, jobs):
        with self._mu:
            self._running = list(jobs)
            self._by_id = {j.id: j for j in jobs}
            self._busy = True
        ctx = Context(self, jobs)
        inputs, runnable = [], []
        for j in jobs:
            try:
                inputs.append(msgpack.unpackb(j.raw_input))
                runnable.append(j)
            except (msgpack.MsgpackError, UnicodeDecodeError) as e:
                j.failed = "input is not valid msgpack: %s" % e
        result = {}
        if runnable:
            sub = Context(self, runnable)
            t = threading.Thread(target=self._call_handler, args=(inputs, sub, result),
                                 name="fleet-handler", daemon=True)
            t.start()
            self._watch(t, runnable)
        ran_mono = _mono_ms()
        self._account(jobs, ran_mono)
        finishes, requeues = self._outcomes(jobs, runnable, result)
        self._write_outcomes(finishes, requeues)
        with self._mu:
            self._running = []
            self._by_id = {}
            self._busy = False
        del ctx

    def _call_handler(self, inputs, ctx, result):
        try:
            outs = self.handler(inputs, ctx)
            result["outputs"] = list(outs) if outs is not None else None
        except Retryable as e:
            result["retry"] = str(e) or "retryable error"
        except BaseException as e:  # noqa: B902 - any other error fails the batch's jobs
            result["error"] = str(e) or type(e).__name__
            log.exception("handler failed")

    def _watch(self, t, jobs):
        """Waits for the handler thread, ending jobs the handler cannot be waited for: a
        timeout past its grace (failed), and everything at the end of the drain time."""
        while t.is_alive():
            t.join(0.05)
            now = _mono_ms()
            for j in jobs:
                if j.timeout_s and not j.timed_out and now - j.started_mono > j.timeout_s * 1000:
                    j.timed_out = True
            if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
                self._drain_expired = True
                return  # the jobs still running are handed back (_outcomes)
            if all(j.stale or (j.timed_out and now - j.started_mono >
                               j.timeout_s * 1000 + TIMEOUT_GRACE_MS) for j in jobs):
                return  # nothing left to wait for: every job is lost or failed for its time

    def _outcomes(self, jobs, runnable, result):
        """[(job, status, result bytes, error)] to finish, [(job, kind, error)] to requeue."""
        finishes, requeues = [], []
        done = "outputs" in result or "retry" in result or "error" in result
        outs = result.get("outputs")
        if "outputs" in result and (outs is None or len(outs) != len(runnable)):
            result = {"error": "handler returned %s outputs for %d inputs" %
                      ("no" if outs is None else len(outs), len(runnable))}
            outs = None
        index = {id(j): i for i, j in enumerate(runnable)}
        for j in jobs:
            if j.stale:
                continue  # another attempt owns the job: drop the result
            if j.failed is not None and j.retryable and not (j.cancel and j.seen_cancel):
                requeues.append((j, "retry", j.failed))
            elif j.failed is not None:
                finishes.append((j, "failed", b"", j.failed))
            elif not done:
                if j.timed_out:
                    finishes.append((j, "failed", b"", _timeout_error(j)))
                else:
                    requeues.append((j, "handback", ""))  # drain time over
            elif j.timed_out:
                finishes.append((j, "failed", b"", _timeout_error(j)))
            elif j.cancel and j.seen_cancel:
                finishes.append((j, "cancelled", b"", "cancelled by the client while running"))
            elif self._drain_expired and j.seen_cancel and "outputs" not in result:
                requeues.append((j, "handback", ""))
            elif "retry" in result:
                requeues.append((j, "retry", result["retry"]))
            elif "error" in result:
                finishes.append((j, "failed", b"", result["error"]))
            else:
                out = outs[index[id(j)]]
                try:
                    data = msgpack.packb(out)
                except (msgpack.MsgpackError, UnicodeEncodeError) as e:
                    finishes.append((j, "failed", b"", "output is not serialisable: %s" % e))
                    continue
                finishes.append((j, "succeeded", data, ""))
        return finishes, requeues

    def _account(self, jobs, ran_mono):
        with self._mu:
            self._batch_h.observe(len(jobs))
            for j in jobs:
                self._run_h.observe(ran_mono - j.started_mono)
                if j.attempts == 1 and not j.reclaimed and j.created_ms > 0 and \
                        j.started_ms >= j.created_ms:
                    self._wait_h.observe(j.started_ms - j.created_ms)

    def _write_progress(self, j, p):
        k = j.sh.keys
        if j.stale or j.ended:
            return
        try:
            rep = self.s["progress"](self.r, [k.job(j.id), k.webhooks()],
                                     [j.token, p[0], p[1], p[2], p[3], k.events(), j.id,
                                      k.delivery_prefix()])
        except redis.exceptions.ResponseError as e:
            if _refused(e):
                j.pending_progress = p  # sent before the finish
            else:
                log.error("progress script failed for job %s: %s", j.id, e)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            j.pending_progress = p
            return
        j.pending_progress = None
        self._lease_reply(j, rep)

    def _emit(self, j, data):
        k = j.sh.keys
        try:
            rep = self.s["emit"](self.r, [k.job(j.id), k.outputs(j.id), k.webhooks()],
                                 [j.token, data, self.max_outputs, self.max_output_bytes,
                                  k.events(), j.id, k.delivery_prefix(), self.output_webhook_ms])
        except redis.exceptions.ResponseError as e:
            if not _refused(e):
                log.error("emit script failed for job %s: %s", j.id, e)
            raise OutputRefused("output not stored: redis answered %s" % e) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            raise OutputRefused("output not stored: redis unreachable") from None
        tag = _text(rep[0]) if isinstance(rep, list) and rep else ""
        if tag == "ok":
            return True
        if tag in ("cancel", "stale"):
            self._lease_reply(j, tag)
            return False
        if tag == "limit" and len(rep) == 3:
            if _text(rep[1]) == "count":
                raise OutputRefused("output not stored: the job already has %s outputs, the "
                                    "most one job may emit (max_outputs)" % _text(rep[2]))
            raise OutputRefused("output not stored: its %d bytes would take the job's outputs "
                                "past %s bytes (max_output_bytes)" % (len(data), _text(rep[2])))
        raise OutputRefused("output not stored: unexpected reply %r" % (rep,))

    def _lease_reply(self, j, rep):
        tag = _text(rep)
        if tag == "cancel":
            if not j.cancel:
                log.info("job %s: cancel requested", j.id)
            j.cancel = True
        elif tag == "stale":
            if not j.stale:
                log.warning("job %s: lease lost; its result will be dropped", j.id)
            j.stale = True

    def _give_up(self):
        """True once a result may be given up: the drain time is over."""
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline + 5

    def _write_outcomes(self, finishes, requeues):
        for j, _, _, _ in finishes:
            if j.pending_progress and not j.stale:
                self._write_progress(j, j.pending_progress)
        # One finish call writes jobs of one shard: a batch from several is split by shard.
        by_shard = {}
        for f in finishes:
            by_shard.setdefault(f[0].sh.k, []).append(f)
        parts = [(fs[0][0].sh, fs[at:at + FINISH_MAX_JOBS]) for fs in by_shard.values()
                 for at in range(0, len(fs), FINISH_MAX_JOBS)]
        for sh, part in parts:
            k = sh.keys
            part = [f for f in part if not f[0].stale]
            if not part:
                continue
            keys = [sh.stream, k.stats(), k.entries(self.model), k.webhooks()]
            args = [fkeys.GROUP, self.model, k.events(), k.delivery_prefix(), k.active_prefix(),
                    k.job_prefix(), fkeys.RESULT_SUFFIX, k.gone_prefix(), k.kept_prefix()]
            for j, status, data, err in part:
                args += [j.id, j.token, status, data, _utf8_cut(err, FINISH_ERROR_MAX)]
            rep = self._write("finish", keys, args)
            if rep is None:
                continue
            for i, (j, status, _, _) in enumerate(part):
                tag = _text(rep[i]) if isinstance(rep, list) and i < len(rep) else "?"
                j.ended = True
                if tag == "ok":
                    self._jobs_done += 1
                    log.info("job %s %s", j.id, status)
                elif tag == "stale":
                    log.warning("job %s: finish answered stale; result dropped", j.id)
                else:
                    log.error("job %s: unexpected finish reply %r", j.id, tag)
        for j, kind, err in requeues:
            if j.stale:
                continue
            delay = 0
            if kind == "retry":
                d = self.retry_base_ms * (2 ** max(j.attempts - 1, 0))
                d = min(d, self.retry_max_ms)
                delay = int(d - random.random() * d / 2)
            k = j.sh.keys
            keys = [k.job(j.id), j.sh.stream, k.delayed(self.model), k.stats(),
                    k.entries(self.model), k.dlq(), k.webhooks()]
            args = [j.token, delay, kind, _utf8_cut(err, REQUEUE_ERROR_MAX), fkeys.GROUP,
                    self.model, k.events(), j.id, self.dlq_cap, k.delivery_prefix(),
                    k.active_prefix(), k.gone_prefix(), k.kept_prefix()]
            rep = self._write("requeue", keys, args)
            j.ended = True
            if rep is not None:
                log.info("job %s requeued (%s): %s", j.id, kind,
                         [_text(x) for x in rep] if isinstance(rep, list) else rep)

    def _write(self, name, keys, args):
        """Runs a final write until it has an answer; the keeper renews the leases meanwhile.
        Returns the reply, or None when it was given up (drain over) or failed."""
        while True:
            try:
                rep = self.s[name](self.r, keys, args)
                self._ok()
                return rep
            except redis.exceptions.ResponseError as e:
                if not _refused(e):
                    log.error("%s script failed: %s", name, e)
                    return None
                if self._give_up():
                    return None
                self._pause_refused(name, e)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
                # Unknown whether it ran: resending is harmless (a landed finish answers stale).
                if self._give_up():
                    return None
                log.warning("%s: connection lost (%s); resending", name, e)
                time.sleep(BACKOFF_MIN_S)

    # ------------------------------------------------------------------ keeper

    def _keeper(self):
        renew_every = min(self.lease_ms / 3.0, 1000.0) / 1000.0
        next_hb = 0.0
        next_metrics = time.monotonic() + METRICS_FLUSH_MS / 1000.0
        next_sweep = time.monotonic() + min(self.consumer_idle_ms / 2000.0, 60.0)
        while not self._quit.is_set():
            now = time.monotonic()
            try:
                self._renew_all()
                if now >= next_hb:
                    ok = self._heartbeat()
                    next_hb = now + (HEARTBEAT_MS if ok else HEARTBEAT_SLOW_MS) / 1000.0
                if now >= next_metrics:
                    self._flush_metrics()
                    next_metrics = now + METRICS_FLUSH_MS / 1000.0
                if now >= next_sweep:
                    self._sweep_consumers()
                    next_sweep = now + min(self.consumer_idle_ms / 2000.0, 60.0)
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("keeper: %s", e)
                self._registered = -1  # register again on the next connection
            except Exception:  # noqa: BLE001 - the leases depend on this thread going on
                log.exception("keeper: unexpected error")
            self._quit.wait(renew_every)

    def _renew_all(self):
        with self._mu:
            jobs = [j for j in self._running if not j.ended and not j.stale]
        if not jobs:
            return
        calls = [(self.s["renew"], [j.sh.keys.job(j.id), j.sh.stream],
                  [j.token, self.lease_ms, fkeys.GROUP, self.name]) for j in jobs]
        for j, rep in zip(jobs, scripts.run_pipeline(self.r, calls)):
            if _is_error(rep):
                if not _refused(rep):
                    log.error("renew of job %s failed: %s", j.id, rep)
                continue
            if j.ended:
                continue  # its finish landed meanwhile: 'stale' means nothing then
            self._lease_reply(j, rep)

    def _heartbeat(self):
        k = self.keys
        try:
            sec, usec = self.r.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
            epoch = self._conn_epoch
            if self._registered != epoch:
                rec = json.dumps({"created_ms": now_ms, "registered_by": "worker %s on %s" %
                                  (self.name, self.host)}, separators=(",", ":"))
                if self.r.hsetnx(k.models(), self.model, rec):
                    self.r.publish(k.events(), "models " + self.model)
                self._registered = epoch  # once per connection, as the C worker
            p = self.r.pipeline(transaction=False)
            p.zadd(k.workers(), {self.name: now_ms})
            p.hset(k.worker(self.name), mapping={
                "model": self.model, "backend": self.backend, "max_batch": self.max_batch,
                "pid": os.getpid(), "host": self.host, "started_ms": self._started_ms,
                "last_seen_ms": now_ms, "jobs_done": self._jobs_done,
                "busy": 1 if self._busy else 0, "protocol": fkeys.PROTOCOL_VERSION})
            p.expire(k.worker(self.name), WORKER_KEY_TTL_S)
            p.zremrangebyscore(k.workers(), "-inf", now_ms - WORKER_GONE_MS)
            reps = p.execute(raise_on_error=False)
        except redis.exceptions.ResponseError as e:
            if _refused(e):
                self._registered = -1  # a refused HSETNX is tried at the next heartbeat
            log.warning("heartbeat refused: %s", e)
            return False
        bad = [r for r in reps if _is_error(r)]
        if bad:
            log.warning("heartbeat refused: %s", bad[0])
            return False
        return True

    def _flush_metrics(self, force=False):
        with self._mu:
            if not self._batch_h.count:
                return
            snap = (self._wait_h, self._run_h, self._batch_h)
            self._wait_h, self._run_h, self._batch_h = _Hist(_WAIT_LE), _Hist(_RUN_LE), _Hist(_BATCH_LE)
        key = self.keys.metrics(self.model)
        fields = snap[0].fields("wait", True) + snap[1].fields("run", True) + \
            snap[2].fields("batch", False)
        try:
            # MULTI (all or nothing); a cluster's pipeline has none: the hash is one key.
            p = self.r.pipeline(transaction=not self.clustered)
            for f, n in fields:
                p.hincrby(key, f, n)
            p.expire(key, METRICS_TTL_S)
            p.execute()
        except redis.exceptions.ResponseError as e:
            # Refused: nothing was applied; keep the counts for the next report.
            with self._mu:
                self._wait_h.add(snap[0])
                self._run_h.add(snap[1])
                self._batch_h.add(snap[2])
            log.warning("metrics report refused: %s", e)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            pass  # it may have landed: dropped rather than counted twice

    def _sweep_consumers(self):
        for sh in list(self._shards.values()):
            try:
                consumers = self.r.xinfo_consumers(sh.stream, fkeys.GROUP)
            except redis.exceptions.ResponseError:
                continue
            for c in consumers:
                name = _text(c.get("name", b""))
                if name == self.name or c.get("pending", 1) != 0 or \
                        c.get("idle", 0) < self.consumer_idle_ms:
                    continue
                self.r.xgroup_delconsumer(sh.stream, fkeys.GROUP, name)
                log.info("removed an idle consumer with nothing pending: %s", name)

    def _deregister(self):
        k = self.keys
        try:
            self.r.zrem(k.workers(), self.name)
            self.r.delete(k.worker(self.name))
            for sh in list(self._shards.values()):
                pending = self.r.xpending_range(sh.stream, fkeys.GROUP, min="-", max="+",
                                                count=1, consumername=self.name)
                if not pending:
                    self.r.xgroup_delconsumer(sh.stream, fkeys.GROUP, self.name)
        except redis.exceptions.RedisError as e:
            log.warning("deregistering failed: %s", e)

    # ------------------------------------------------------------------ control channel

    def _control(self):
        channel = self.keys.control(self.name)
        while not self._quit.is_set():
            ps = None
            try:
                ps = self.r.pubsub(ignore_subscribe_messages=False)
                ps.subscribe(channel)
                while not self._quit.is_set():
                    msg = ps.get_message(timeout=0.5)
                    if not msg:
                        continue
                    if msg["type"] == "subscribe":
                        self._subscribed.set()
                    elif msg["type"] == "message":
                        self._on_control(_text(msg["data"]))
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("control channel lost (%s); resubscribing", e)
                self._quit.wait(ERROR_PAUSE_S)
            finally:
                if ps is not None:
                    try:
                        ps.close()
                    except Exception:  # noqa: BLE001 - closing a broken connection
                        pass

    def _on_control(self, text):
        parts = text.split(" ", 1)
        if len(parts) == 2 and parts[0] == "cancel":
            with self._mu:
                j = self._by_id.get(parts[1].strip())
            if j is not None:
                log.info("job %s: cancel signal", j.id)
                j.cancel = True


def serve(model, handler, *, redis_url, max_batch=8, max_delay_ms=5, lease_ms=30000,
          prefix="fleet", name=None, install_signals=True, **options):
    """Runs `handler(inputs, ctx) -> outputs` for the jobs of `model` until SIGTERM/SIGINT.

    Options (the C worker's defaults): cluster (seed nodes "host:port,..." of a Redis
    Cluster; default FLEET_REDIS_CLUSTER), drain_timeout_s=25, timeout_s=0 (a job without its
    own timeout_s has none), retry_base_ms=1000, retry_max_ms=60000, ready_target=8,
    dlq_cap=10000, progress_interval_ms=200, consumer_idle_ms=600000, max_outputs=1000,
    max_output_bytes=1048576, output_webhook_ms=1000, allow_eviction=False, backend="python",
    sentinels, sentinel_master, sentinel_password (default: FLEET_REDIS_SENTINELS,
    FLEET_REDIS_SENTINEL_MASTER, FLEET_REDIS_SENTINEL_PASSWORD; with sentinels the primary
    they name is used, with redis_url's credentials and database).
    """
    w = Worker(model, handler, redis_url=redis_url, max_batch=max_batch,
               max_delay_ms=max_delay_ms, lease_ms=lease_ms, prefix=prefix, name=name, **options)
    w.serve(install_signals=install_signals)
    return w
