"""S3 errors and throttling: a proxy on 127.0.0.1 in front of the real moto server answers
503 SlowDown to the first N requests, then forwards. Nothing inside boto3 is mocked."""

from __future__ import annotations

import http.client
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from services import FAKE_AWS, s3_client

from scregnet import priors_store as ps

pytestmark = pytest.mark.services

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class ThrottlingProxy:
    def __init__(self, upstream: str, failures: int):
        self.failures, self.seen, self.failed = failures, 0, 0
        up = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen += 1
                if proxy.failed < proxy.failures:
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{up.hostname}:{up.port}"
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bucket_with_priors(moto_s3, monkeypatch):
    for k, v in FAKE_AWS.items():
        monkeypatch.setenv(k, v)
    name = f"priors-{uuid.uuid4().hex[:10]}"
    s3 = s3_client(moto_s3.url)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="P/ds/a.csv", Body=b"tf,target\nTF000,GENE0001\n")
    return name


def test_throttling_is_retried_with_the_same_result(moto_s3, bucket_with_priors):
    with ThrottlingProxy(moto_s3.url, failures=3) as proxy:
        listing = ps.list_priors(ps.s3_client(proxy.url), bucket_with_priors, "P")
    assert proxy.failed == 3 and proxy.seen >= 4  # three SlowDowns, then the real answer
    direct = ps.list_priors(ps.s3_client(moto_s3.url), bucket_with_priors, "P")
    keys = lambda lst: [o.key for objs in lst.datasets.values() for o in objs]  # noqa: E731
    assert keys(listing) == keys(direct) == ["P/ds/a.csv"]


def test_persistent_throttling_fails_clearly_after_the_retry_budget(moto_s3, bucket_with_priors):
    from botocore.exceptions import ClientError

    with ThrottlingProxy(moto_s3.url, failures=100) as proxy:
        with pytest.raises(ClientError, match="SlowDown"):
            ps.list_priors(ps.s3_client(proxy.url), bucket_with_priors, "P")
    assert proxy.failed == 6  # the first request + retries={"max_attempts": 5} (botocore counts retries)
