"""Fixtures that run a real fleet on loopback for the Python tests: a throwaway
redis-server, the build's fleet-gateway (API keys on, a tenant made with fleetctl) and
workers, on free ports in a temporary directory, all stopped at the end, pass or fail.

The build's binaries come from FLEET_BIN_DIR (tests/CMakeLists.txt sets it); without them
the fixtures fail, so no test passes without having run.

    def test_x(fleet_stack):            # one stack per test module: echo and sleep workers
        fleet_stack.url, fleet_stack.api_key, fleet_stack.redis_url, fleet_stack.prefix
        fleet_stack.start_worker("echo")                 # another C worker
        fleet_stack.start_process("py-worker", [sys.executable, "w.py"])   # any process
        fleet_stack.fleetctl("tenant", "add", "other", "--json")

    def test_y(make_fleet_stack):       # a stack of one's own, with settings
        s = make_fleet_stack(gateway_env={"FLEET_MAX_QUEUE": "1"}, workers=[])
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

READY_S = 20.0


def bin_dir() -> str:
    d = os.environ.get("FLEET_BIN_DIR", "")
    if not d:
        pytest.fail("FLEET_BIN_DIR is not set: it names the build's bin directory "
                    "(ctest sets it; by hand: FLEET_BIN_DIR=build-xxx/bin)")
    for b in ("fleet-gateway", "fleet-worker", "fleetctl"):
        if not os.access(os.path.join(d, b), os.X_OK):
            pytest.fail(f"{b} not found or not executable in {d}: build it first")
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], bool], timeout_s: float = READY_S, what: str = "") -> None:
    """Polls pred until it is true; fails the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or pred}")
        time.sleep(0.02)


class Proc:
    """A process the stack started, its output in a log file of the stack's directory."""

    def __init__(self, name: str, argv: Sequence[str], env: Dict[str, str], log_dir: str) -> None:
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(list(argv), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after timeout_s; returns the exit status."""
        if self.alive():
            os.kill(self.p.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.p.terminate()
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


def _redis_ask(port: int, command: bytes) -> bytes:
    """One inline command's raw answer (b"" when the server does not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(command + b"\r\n")
            return s.recv(65536)
    except OSError:
        return b""


def _redis_ping(port: int) -> bool:
    return _redis_ask(port, b"PING").startswith(b"+PONG")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class FleetStack:
    """Redis, a gateway with API keys on and a tenant, and workers.

    Attributes: ``url`` (the gateway), ``api_key`` (the tenant ``tenant``'s key),
    ``tenant_webhook_secret`` (that tenant's: it signs the webhooks of its jobs),
    ``admin_key`` (an admin tenant's), ``webhook_secret`` (the gateway's
    FLEET_WEBHOOK_SECRET), ``redis_url``, ``prefix``, ``dir`` (temporary directory),
    ``redis`` and ``gateway`` (their Procs). With ``shards`` > 1 the fleet is spread over
    that many shards (``fleetctl shards init``, before the gateway starts). With
    ``cluster_masters`` (>= 3) Redis is a loopback Redis Cluster of that many masters
    without replicas: ``cluster`` holds its nodes ("127.0.0.1:p,..."), given to every
    process as FLEET_REDIS_CLUSTER, and ``redis_url`` names its first node.
    """

    def __init__(self, gateway_env: Optional[Dict[str, str]] = None,
                 workers: Sequence[str] = ("echo", "sleep"),
                 worker_env: Optional[Dict[str, str]] = None, shards: int = 1,
                 cluster_masters: int = 0) -> None:
        self.bin = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="fleet-pytest-")
        self.prefix = "fleet"
        self.redis_url = ""
        self.cluster = ""
        self.procs: List[Proc] = []
        self.worker_env = dict(worker_env or {})
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        try:
            if cluster_masters:
                self._start_cluster(cluster_masters)
            else:
                self._start_redis()
            self.admin_key = self.fleetctl_json("tenant", "add", "ops", "--admin")["api_key"]
            t = self.fleetctl_json("tenant", "add", "tenant")
            self.api_key = t["api_key"]
            self.tenant_webhook_secret = t["webhook_secret"]
            # echo and sleep are accepted before (or without) their workers; idle has none,
            # so its jobs stay queued (the quota, queue-full and 425 cases)
            for m in ("echo", "sleep", "idle"):
                self.fleetctl("model", "add", m)
            if shards > 1:
                self.fleetctl("shards", "init", str(shards))
            self.gateway = self.start_gateway(gateway_env or {})
            for m in workers:
                self.start_worker(m)
        except BaseException:
            self.stop()
            raise

    # ---------------------------------------------------------------- processes ----

    def start_process(self, name: str, argv: Sequence[str],
                      env: Optional[Dict[str, str]] = None) -> Proc:
        """Starts any process (a Python worker...) with the stack's FLEET_REDIS_URL and
        FLEET_PREFIX in its environment, plus env; it is stopped with the stack."""
        e = dict(os.environ)
        e.update({"FLEET_REDIS_URL": self.redis_url, "FLEET_PREFIX": self.prefix,
                  "FLEET_REDIS_CLUSTER": self.cluster})
        e.update(env or {})
        p = Proc(f"{name}-{len(self.procs)}", argv, e, self.dir)
        self.procs.append(p)
        return p

    def _start_redis(self) -> None:
        server = os.environ.get("FLEET_TEST_REDIS_SERVER", "redis-server")
        if not shutil.which(server):
            pytest.fail(f"{server} not found on PATH")
        for _ in range(5):
            port = free_port()
            p = self.start_process("redis", [server, "--port", str(port), "--bind", "127.0.0.1",
                                             "--save", "", "--appendonly", "no",
                                             "--dir", self.dir])
            self.redis_url = f"redis://127.0.0.1:{port}"
            self.redis = p

            def up() -> bool:
                if not p.alive():
                    return True
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        return s.recv(16).startswith(b"+PONG")
                except OSError:
                    return False
            wait_for(up, what="redis-server")
            if p.alive():
                return
        pytest.fail(f"redis-server did not start: {p.log()[-2000:]}")

    def _start_cluster(self, masters: int) -> None:
        server = os.environ.get("FLEET_TEST_REDIS_SERVER", "redis-server")
        if not shutil.which(server) or not shutil.which("redis-cli"):
            pytest.fail(f"{server} or redis-cli not found on PATH")
        nodes = []
        for i in range(masters):
            port, bus = free_port(), free_port()
            d = os.path.join(self.dir, f"node-{i}")
            os.makedirs(d)
            p = self.start_process(f"redis-node{i}", [
                server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", d, "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000",
                "--cluster-port", str(bus)])
            nodes.append((p, port))
        for p, port in nodes:
            wait_for(lambda: _redis_ping(port) or not p.alive(), what="a cluster node")
            if not p.alive():
                pytest.fail(f"a cluster node did not start: {p.log()[-2000:]}")
        addrs = [f"127.0.0.1:{port}" for _, port in nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(b"cluster_state:ok" in _redis_ask(port, b"CLUSTER INFO")
                             for _, port in nodes), what="cluster_state:ok on every node")
        self.redis = nodes[0][0]
        self.redis_url = f"redis://127.0.0.1:{nodes[0][1]}"
        self.cluster = ",".join(addrs)

    def start_gateway(self, env: Dict[str, str]) -> Proc:
        """Starts a gateway on a free port (API keys on, webhooks signed with
        webhook_secret and allowed to loopback, every registered model accepted: the
        registered echo, sleep and ``idle``, which no worker serves); sets ``url`` to it."""
        for _ in range(3):
            port = free_port()
            e = {"FLEET_LISTEN": f"127.0.0.1:{port}", "FLEET_AUTH": "on",
                 "FLEET_WEBHOOK_SECRET": self.webhook_secret,
                 "FLEET_WEBHOOK_ALLOW": "127.0.0.0/8"}
            e.update(env)
            p = self.start_process("gateway", [os.path.join(self.bin, "fleet-gateway")], e)
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: not p.alive() or _http_status(url + "/readyz") == 200,
                     what="the gateway's /readyz")
            if p.alive():
                self.url = url
                return p
            if "in use" not in p.log():
                break
        pytest.fail(f"fleet-gateway did not start: {p.log()[-2000:]}")

    def start_worker(self, model: str, *args: str, env: Optional[Dict[str, str]] = None) -> Proc:
        """Starts ``fleet-worker --model MODEL ARGS`` (FLEET_MAX_DELAY_MS=0,
        FLEET_DRAIN_TIMEOUT=2, the stack's worker_env, then env)."""
        e = {"FLEET_MAX_DELAY_MS": "0", "FLEET_DRAIN_TIMEOUT": "2"}
        e.update(self.worker_env)
        e.update(env or {})
        return self.start_process(f"worker-{model}",
                                  [os.path.join(self.bin, "fleet-worker"), "--model", model,
                                   *args], e)

    def fleetctl(self, *args: str) -> subprocess.CompletedProcess:
        """Runs fleetctl on the stack's Redis; fails the test when it exits non-zero."""
        e = dict(os.environ, FLEET_REDIS_URL=self.redis_url, FLEET_PREFIX=self.prefix,
                 FLEET_REDIS_CLUSTER=self.cluster)
        r = subprocess.run([os.path.join(self.bin, "fleetctl"), *args], env=e,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.fail(f"fleetctl {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def fleetctl_json(self, *args: str) -> dict:
        return json.loads(self.fleetctl(*args, "--json").stdout)

    def metric(self, name_and_labels: str) -> float:
        """The sum of the gateway's /metrics samples whose line starts with the text."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name_and_labels))

    def stop(self) -> None:
        """Stops every process (the gateway and workers before Redis), checks that none
        crashed or reported a sanitizer error, and removes the directory when all is well."""
        problems = []
        for p in reversed(self.procs):
            rc = p.stop()
            log = p.log()
            if "ERROR: AddressSanitizer" in log or "runtime error:" in log or \
                    "LeakSanitizer" in log:
                problems.append(f"{p.name} reported a sanitizer error:\n{log[-4000:]}")
            elif p.name.startswith(("gateway", "worker")) and rc not in (0, -signal.SIGTERM):
                problems.append(f"{p.name} exited {rc}:\n{log[-2000:]}")
        self.procs = []
        if problems:
            raise AssertionError("\n".join(problems) + f"\n(logs kept in {self.dir})")
        if not os.environ.get("FLEET_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


class Recorder:
    """What a client sent and got, seen at its transport: (method, path, request headers,
    status, response headers) per attempt; ``fail_first`` attempts fail at the socket
    level (httpx.ConnectError) before anything is sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: List[tuple] = []

    def before(self, request: httpx.Request) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            self.calls.append((request.method, request.url.path, dict(request.headers), None, {}))
            raise httpx.ConnectError("connection refused (the test's transport)",
                                     request=request)

    def after(self, request: httpx.Request, response: httpx.Response) -> None:
        self.calls.append((request.method, request.url.path, dict(request.headers),
                           response.status_code, dict(response.headers)))

    def sent(self, method: str, path_prefix: str = "") -> List[tuple]:
        return [c for c in self.calls if c[0] == method and c[1].startswith(path_prefix)]


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that records every attempt in a Recorder."""

    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec
        # as the client's own transport (fleet._http.sync_transport)
        import fleet._http
        fleet._http.tcp_nodelay(self)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.rec.before(request)
        resp = super().handle_request(request)
        self.rec.after(request, resp)
        return resp


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    """The asyncio twin of RecordingTransport."""

    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.rec.before(request)
        resp = await super().handle_async_request(request)
        self.rec.after(request, resp)
        return resp


@pytest.fixture(scope="module")
def fleet_stack() -> Iterator[FleetStack]:
    """One stack per test module: Redis, a gateway (API keys on), an echo and a sleep
    worker."""
    s = FleetStack()
    yield s
    s.stop()


@pytest.fixture
def make_fleet_stack() -> Iterator[Callable[..., FleetStack]]:
    """A factory of stacks with their own settings (FleetStack's arguments), each stopped
    at the end of the test."""
    made: List[FleetStack] = []

    def make(**kw: object) -> FleetStack:
        s = FleetStack(**kw)  # type: ignore[arg-type]
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()
