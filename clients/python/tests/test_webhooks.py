"""fleet.webhooks.verify against a real delivery: the gateway POSTs a job's webhook to a
receiver this test runs on loopback (http.server), and the helper checks its signature."""
from __future__ import annotations

import http.server
import threading
import time

import pytest

import fleet
from fleet import webhooks
from conftest import wait_for


@pytest.fixture
def receiver():
    got = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()
    srv.server_close()


def test_a_real_delivery_verifies(fleet_stack, receiver):
    url, got = receiver
    with fleet.Client(fleet_stack.url, fleet_stack.api_key) as c:
        job = c.submit("echo", {"w": 1}, webhook=url)
        job.wait(30)
    wait_for(lambda: got, what="the webhook delivery")
    headers, body = got[0]
    secret = fleet_stack.tenant_webhook_secret
    event = webhooks.verify(secret, headers, body)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
    assert b"succeeded" in body
    assert webhooks.is_valid(secret, headers, body)
    # anything changed is refused
    with pytest.raises(webhooks.InvalidSignature):
        webhooks.verify(secret, headers, body.replace(b'succeeded', b'failed'))
    with pytest.raises(webhooks.InvalidSignature):
        webhooks.verify(fleet_stack.webhook_secret, headers, body)  # another secret
    h2 = dict(headers, **{"webhook-id": headers["webhook-id"] + "x"})
    assert not webhooks.is_valid(secret, h2, body)
    ts = int(headers["webhook-timestamp"])
    with pytest.raises(webhooks.InvalidSignature, match="from now"):
        webhooks.verify(secret, headers, body, now=ts + 301)
    with pytest.raises(webhooks.InvalidSignature, match="from now"):
        webhooks.verify(secret, headers, body, now=ts - 301)
    webhooks.verify(secret, headers, body, now=ts + 299)
    # several signatures (a secret being rotated): any v1 one that matches will do
    sig = headers["webhook-signature"]
    multi = dict(headers, **{"webhook-signature": f"v1,AAAA v2,{sig[3:]} {sig}"})
    webhooks.verify(secret, multi, body)
    only_v2 = dict(headers, **{"webhook-signature": f"v2,{sig[3:]}"})
    assert not webhooks.is_valid(secret, only_v2, body)


def test_the_standard_webhooks_example():
    # the example of docs/webhooks.md ("Checking by hand") and the Standard Webhooks spec
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    h = {"Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "Webhook-Timestamp": "1614265330",
         "Webhook-Signature": sig}
    assert webhooks.verify(secret, h, body, now=1614265330 + 10) == {"test": 2432232314}
    assert not webhooks.is_valid(secret, h, body)  # years old: outside the tolerance
    with pytest.raises(ValueError):
        webhooks.verify("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, body, now=1614265330)
    assert time.time() > 1614265330
