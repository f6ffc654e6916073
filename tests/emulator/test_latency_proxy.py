"""Tests of bench/latency_proxy.py (stdlib unittest; boto3 for the end-to-end test).

Run from the repository root:

    python -m unittest discover -s tests/emulator -p 'test_*.py' -v

The proxy runs as a subprocess on 127.0.0.1 (port 0) in front of a small
echo server in this process, which reports what reached it. Nothing asserts an
upper bound on time: the delay is checked as a lower bound (time.sleep never
returns early), and concurrency with a barrier that only 20 requests in flight
at once can pass.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROXY = HERE.parent.parent / "bench" / "latency_proxy.py"
READY_TIMEOUT = 60.0
sys.path.insert(0, str(HERE))


class Echo(BaseHTTPRequestHandler):
    """Answers with what it received: {"method", "path", "headers", "body"}.

    /status/<n> answers with that status, /chunked answers chunked, /barrier
    waits until `barrier` has all its parties (so only concurrent requests
    pass)."""

    protocol_version = "HTTP/1.1"
    barrier: threading.Barrier | None = None

    def log_message(self, *_: object) -> None:
        pass

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.read(2)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def echo(self) -> None:
        body = self.read_body()
        if self.path == "/barrier" and Echo.barrier is not None:
            Echo.barrier.wait(timeout=60)
        payload = json.dumps({"method": self.command, "path": self.path, "headers": self.headers.items(),
                              "body": body.hex()}).encode()
        status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
        self.send_response(status, "Custom Reason" if status == 299 else None)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "yes")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                half = len(payload) // 2
                for part in (payload[:half], payload[half:]):
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = echo


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningProxy:
    def __init__(self, target: str, *args: str):
        self.dir = tempfile.TemporaryDirectory(prefix="rekey-proxy-test-")
        self.ready = Path(self.dir.name, "ready.json")
        self.proc = subprocess.Popen([sys.executable, str(PROXY), "--target", target,
                                      "--ready-file", str(self.ready), *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}: {self.proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("proxy not ready")
            time.sleep(0.02)
        self.info = json.loads(self.ready.read_text())
        self.port = self.info["port"]
        self.endpoint = self.info["endpoint"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.dir.cleanup()

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, chunked: bool = False) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    resp = conn.getresponse()
    return resp, resp.read()


def fetch(proxy: "RunningProxy", method: str, path: str, body: bytes | None = None, headers: dict | None = None,
          chunked: bool = False) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on a connection of its own."""
    conn = proxy.conn()
    try:
        return request(conn, method, path, body, headers, chunked)
    finally:
        conn.close()


class ProxyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = EchoServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        cls.target = f"http://127.0.0.1:{cls.upstream.server_address[1]}"
        cls.proxy = RunningProxy(cls.target)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proxy.stop()
        cls.upstream.shutdown()
        cls.upstream.server_close()

    def test_ready_file_and_line(self) -> None:
        self.assertEqual(self.proxy.info["target"], self.target)
        self.assertEqual(self.proxy.endpoint, f"http://127.0.0.1:{self.proxy.port}")
        self.assertEqual(self.proxy.proc.stdout.readline().decode().strip(), f"READY {self.proxy.endpoint}")

    def test_every_request_is_delayed_at_least_30_ms(self) -> None:
        conn = self.proxy.conn()
        self.addCleanup(conn.close)
        for _ in range(5):
            t0 = time.monotonic()
            resp, _ = request(conn, "GET", "/x")
            elapsed = time.monotonic() - t0
            self.assertEqual(resp.status, 200)
            self.assertGreaterEqual(elapsed, 0.030)

    def test_body_headers_method_and_path_pass_through(self) -> None:
        body = bytes(range(256)) * 40 + b"\r\n0\r\n\r\n"
        headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261128/us-east-1/iam/aws4_request, "
                                    "SignedHeaders=host;x-amz-date, Signature=abc",
                   "X-Amz-Date": "20261128T120000Z", "Content-Type": "application/x-www-form-urlencoded",
                   "X-Amz-Target": "AWSOrganizationsV20161128.ListAccounts"}
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with self.subTest(method=method):
                resp, data = fetch(self.proxy, method, "/a/b%2Bc?Action=ListUsers&x=%20y", body, headers)
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.getheader("X-Echo"), "yes")
                got = json.loads(data)
                self.assertEqual(got["method"], method)
                self.assertEqual(got["path"], "/a/b%2Bc?Action=ListUsers&x=%20y")
                self.assertEqual(bytes.fromhex(got["body"]), body)
                sent = dict(got["headers"])
                for name, value in headers.items():
                    self.assertEqual(sent[name], value)
                self.assertEqual(sent["Content-Length"], str(len(body)))
                self.assertEqual(sent["Host"], f"127.0.0.1:{self.proxy.port}")  # unchanged: it is signed

    def test_chunked_request_body(self) -> None:
        chunks = [b"Action=ListUsers", b"&Version=2010-05-08", b"&x=" + b"z" * 5000]
        resp, data = fetch(self.proxy, "POST", "/", iter(chunks), {"Transfer-Encoding": "chunked"},
                             chunked=True)
        self.assertEqual(resp.status, 200)
        got = json.loads(data)
        self.assertEqual(bytes.fromhex(got["body"]), b"".join(chunks))
        self.assertEqual(dict(got["headers"])["Transfer-Encoding"], "chunked")
        self.assertNotIn("Content-Length", dict(got["headers"]))

    def test_chunked_answer_status_and_head(self) -> None:
        conn = self.proxy.conn()
        self.addCleanup(conn.close)
        resp, data = request(conn, "GET", "/chunked")
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(json.loads(data)["path"], "/chunked")
        resp, data = request(conn, "GET", "/status/404")
        self.assertEqual((resp.status, json.loads(data)["path"]), (404, "/status/404"))
        resp, data = request(conn, "GET", "/status/299")
        self.assertEqual((resp.status, resp.reason), (299, "Custom Reason"))
        resp, data = request(conn, "HEAD", "/x")
        self.assertEqual((resp.status, data), (200, b""))
        self.assertGreater(int(resp.getheader("Content-Length")), 0)
        resp, data = request(conn, "GET", "/after-head")  # the connection is still in step
        self.assertEqual(json.loads(data)["path"], "/after-head")

    def test_keep_alive(self) -> None:
        conn = self.proxy.conn()
        self.addCleanup(conn.close)
        request(conn, "GET", "/one")
        sock = conn.sock
        self.assertIsNotNone(sock)
        resp, data = request(conn, "POST", "/two", b"abc")
        self.assertIs(conn.sock, sock)  # the same connection served both
        self.assertEqual(bytes.fromhex(json.loads(data)["body"]), b"abc")
        self.assertNotIn("Connection", dict(json.loads(data)["headers"]))  # hop-by-hop: not forwarded

    def test_twenty_concurrent_requests(self) -> None:
        Echo.barrier = threading.Barrier(20)  # passes only when 20 requests are in flight at once
        self.addCleanup(setattr, Echo, "barrier", None)

        def one(i: int) -> dict:
            resp, data = fetch(self.proxy, "POST", "/barrier", f"request {i}".encode())
            self.assertEqual(resp.status, 200)
            return json.loads(data)

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = [f.result(timeout=120) for f in [pool.submit(one, i) for i in range(20)]]
        self.assertEqual(sorted(bytes.fromhex(r["body"]).decode() for r in results),
                         sorted(f"request {i}" for i in range(20)))


class ProxyProcessTests(unittest.TestCase):
    def run_proxy(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(PROXY), *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def test_bad_options_exit_2(self) -> None:
        for args in (["--target", "https://127.0.0.1:1"], ["--target", "http://10.1.2.3:80"],
                     ["--target", "http://127.0.0.1"], ["--target", "http://127.0.0.1:1/path"],
                     ["--target", "http://127.0.0.1:1", "--host", "0.0.0.0"],
                     ["--target", "http://127.0.0.1:1", "--min-ms", "50", "--max-ms", "30"],
                     ["--target", "http://127.0.0.1:1", "--min-ms", "-1"],
                     ["--target", "http://127.0.0.1:1", "--port", "70000"]):
            with self.subTest(args=args):
                run = self.run_proxy(*args)
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertRegex(run.stderr, r"^latency_proxy: ")
                self.assertEqual(len(run.stderr.splitlines()), 1, run.stderr)

    def test_configured_delay_and_upstream_down(self) -> None:
        proxy = RunningProxy(f"http://127.0.0.1:{free_port()}", "--min-ms", "60", "--max-ms", "60")
        self.addCleanup(proxy.stop)
        t0 = time.monotonic()
        resp, data = fetch(proxy, "GET", "/")
        self.assertGreaterEqual(time.monotonic() - t0, 0.060)
        self.assertEqual(resp.status, 502)
        self.assertIn(b"latency_proxy: upstream", data)

    def test_replay_answers_a_request_seen_before_without_the_target(self) -> None:
        upstream = EchoServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        proxy = RunningProxy(f"http://127.0.0.1:{upstream.server_address[1]}", "--replay", "--min-ms", "0", "--max-ms", "0")
        self.addCleanup(proxy.stop)
        first, first_data = fetch(proxy, "POST", "/kept", b"Action=ListAccessKeys&UserName=a")
        failed, _ = fetch(proxy, "POST", "/status/500", b"x")
        self.assertEqual((first.status, failed.status), (200, 500))
        upstream.shutdown()
        upstream.server_close()
        again, again_data = fetch(proxy, "POST", "/kept", b"Action=ListAccessKeys&UserName=a")
        self.assertEqual(again.status, 200)
        self.assertEqual(again_data, first_data)
        self.assertEqual(again.getheader("X-Echo"), "yes")
        self.assertIsNotNone(again.getheader("Date"))
        # Another body, and an answer that was not 2xx, still go to the (now gone) target.
        self.assertEqual(fetch(proxy, "POST", "/kept", b"Action=ListAccessKeys&UserName=b")[0].status, 502)
        self.assertEqual(fetch(proxy, "POST", "/status/500", b"x")[0].status, 502)

    def test_sigterm_exits_0_and_removes_the_ready_file(self) -> None:
        proxy = RunningProxy(f"http://127.0.0.1:{free_port()}")
        self.addCleanup(proxy.stop)
        idle = proxy.conn()
        idle.connect()  # an open keep-alive connection must not hold the exit up
        self.addCleanup(idle.close)
        os.kill(proxy.proc.pid, signal.SIGTERM)
        self.assertEqual(proxy.proc.wait(timeout=30), 0)
        self.assertFalse(proxy.ready.exists())


class ProxyWithHarnessTests(unittest.TestCase):
    """boto3 through the proxy to the emulator: signed requests pass unchanged."""

    def test_aws_calls_through_the_proxy(self) -> None:
        import boto3
        from botocore.config import Config

        from test_harness_securityhub import RunningHarness

        h = RunningHarness({"as_of": "2026-11-28T12:00:00Z", "organization": {},
                            "users": [{"name": "alice", "keys": [{"age": "100d"}]}],
                            "accounts": [{"id": "111111111111", "users": [{"name": "bob"}]}]})
        self.addCleanup(h.stop)
        proxy = RunningProxy(h.endpoint)
        self.addCleanup(proxy.stop)

        def client(service: str, **creds: str) -> object:
            return boto3.client(service, endpoint_url=proxy.endpoint, region_name="us-east-1",
                                aws_access_key_id=creds.get("AccessKeyId", "testing"),
                                aws_secret_access_key=creds.get("SecretAccessKey", "testing"),
                                aws_session_token=creds.get("SessionToken"),
                                config=Config(retries={"total_max_attempts": 1}))

        self.assertEqual([u["UserName"] for u in client("iam").list_users()["Users"]], ["alice"])
        self.assertEqual(len(client("organizations").list_accounts()["Accounts"]), 2)
        creds = client("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/OrganizationAccountAccessRole",
                                          RoleSessionName="via-proxy")["Credentials"]
        member = {k: creds[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        self.assertEqual([u["UserName"] for u in client("iam", **member).list_users()["Users"]], ["bob"])
        key = client("iam").create_access_key(UserName="alice")["AccessKey"]
        ident = client("sts", AccessKeyId=key["AccessKeyId"], SecretAccessKey=key["SecretAccessKey"])
        self.assertEqual(ident.get_caller_identity()["Arn"], "arn:aws:iam::123456789012:user/alice")
        calls = h.ok("GET", "/_rekey/calls")
        self.assertEqual(calls["by_account"], {"123456789012": 5, "111111111111": 1})


if __name__ == "__main__":
    unittest.main()
