#!/usr/bin/python3
"""metrics_cost.py: Redis' time for one GET /metrics scrape (the metrics script,
docs/metrics.md, "What a scrape costs") with a number of jobs queued by a number of
tenants.

    bench/metrics_cost.py BIN_DIR JOBS TENANTS

Starts a throwaway redis-server and a gateway from BIN_DIR (API keys on, model echo, no
worker), adds the tenants with BIN_DIR/fleetctl, queues JOBS jobs with 200-byte inputs
through POST /v1/jobs/batch (JOBS / TENANTS per tenant, in batches of up to 1,000), then scrapes 200
times with SLOWLOG recording every command and prints the metrics script's median, mean and
largest time. Needs redis-server and redis-cli 7 (--json) on PATH."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    bin_dir, jobs, tenants = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    work = tempfile.mkdtemp(prefix='fleet-metrics-cost-')
    rport, gport = free_port(), free_port()
    url = f'redis://127.0.0.1:{rport}'
    redis = subprocess.Popen(['redis-server', '--port', str(rport), '--bind', '127.0.0.1',
                              '--save', '', '--dir', work], stdout=subprocess.DEVNULL)
    gateway = None
    try:
        def cli(*args):
            return subprocess.run(['redis-cli', '-p', str(rport), '--json', *args],
                                  capture_output=True, text=True, check=True).stdout

        for _ in range(100):
            if subprocess.run(['redis-cli', '-p', str(rport), 'PING'],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        keys = []
        for t in range(tenants):
            out = subprocess.run([os.path.join(bin_dir, 'fleetctl'), '--redis-url', url,
                                  '--prefix', 'm', 'tenant', 'add', f't{t}'],
                                 capture_output=True, text=True, check=True).stdout
            keys.append(next(w for w in out.split() if w.startswith('fk_')))
        env = dict(os.environ, FLEET_REDIS_URL=url, FLEET_LISTEN=f'127.0.0.1:{gport}',
                   FLEET_PREFIX='m', FLEET_AUTH='on', FLEET_MODELS='echo',
                   FLEET_MAX_QUEUE='10000000')
        gateway = subprocess.Popen([os.path.join(bin_dir, 'fleet-gateway')], env=env,
                                   stdout=open(os.path.join(work, 'gateway.log'), 'w'),
                                   stderr=subprocess.STDOUT)
        base = f'http://127.0.0.1:{gport}'
        for _ in range(100):
            try:
                urllib.request.urlopen(base + '/readyz')
                break
            except OSError:
                time.sleep(0.1)
        left, turn = jobs, 0
        while left > 0:
            n = min(1000, left, -(-jobs // tenants))
            body = json.dumps({'jobs': [{'model': 'echo', 'input': {'x': 'y' * 190}}] * n})
            req = urllib.request.Request(base + '/v1/jobs/batch', data=body.encode(),
                                         headers={'Authorization': f'Bearer {keys[turn % tenants]}',
                                                  'Content-Type': 'application/json'})
            answer = json.load(urllib.request.urlopen(req))
            if answer['accepted'] != n:
                sys.exit(f'batch refused: {answer}')
            left -= n
            turn += 1
        cli('CONFIG', 'SET', 'slowlog-log-slower-than', '0')
        cli('CONFIG', 'SET', 'slowlog-max-len', '100000')
        cli('SLOWLOG', 'RESET')
        for _ in range(200):
            text = urllib.request.urlopen(base + '/metrics').read().decode()
        log = json.loads(cli('SLOWLOG', 'GET', '100000'))
        # The metrics script is the EVALSHA whose arguments hold the metrics hash prefix.
        us = sorted(e[2] for e in log if '{m}:metrics:' in e[3])
        depth = next(l for l in text.split('\n') if l.startswith('fleet_queue_depth{'))
        print(f'jobs {jobs}, tenants {tenants} ({min(tenants, turn)} with jobs): {depth}; '
              f'metrics script over {len(us)} scrapes: median {us[len(us) // 2]} us, '
              f'mean {sum(us) / len(us):.1f} us, max {us[-1]} us')
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
