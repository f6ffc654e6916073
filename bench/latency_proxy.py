#!/usr/bin/env python3
"""A loopback HTTP proxy that adds network latency, for benchmarks.

Every request waits a uniformly random time between --min-ms and --max-ms
(default 30-50 ms), as a round trip to a real AWS region would, and is then
forwarded unchanged (method, path and query, headers including Authorization
and Host, body) to --target; the answer comes back unchanged. The emulator
answers loopback requests in about a millisecond, so without this a benchmark
against it says little about how rekey behaves against AWS, where waiting on
the network dominates.

    latency_proxy.py --target http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
                     [--min-ms 30] [--max-ms 50] [--replay] [--ready-file FILE] [--verbose]

--replay answers a request it has seen before (the same method, path and
body) with the answer the target gave then (2xx answers only; the Date
header made current), without asking the target again: what is left of a
run's time is the latency and the client, not the emulator's CPU. For
read-only runs, such as a scan repeated.

It prints `READY http://127.0.0.1:PORT` once listening (and writes
--ready-file atomically: {"endpoint", "port", "pid", "target"}), binds and
forwards to loopback addresses only, and exits 0 on SIGTERM or SIGINT. A bad
option prints one `latency_proxy: ...` line and exits 2.

Connections: clients get HTTP/1.1 keep-alive; each request is forwarded on a
new upstream connection (the emulator's werkzeug server closes every
connection after one answer anyway). Request bodies may come with a
Content-Length or chunked (they are forwarded the same way, trailers
included); chunked answers are passed on chunked. Hop-by-hop headers
(Connection, Keep-Alive, Proxy-Connection, Expect) are not forwarded; the
proxy answers `Expect: 100-continue` itself. Standard library only.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import ipaddress
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

EXIT_BAD_INPUT = 2
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "expect"}
MAX_CHUNK_LINE = 4096
MAX_DELAY_MS = 60_000
UPSTREAM_TIMEOUT = 300.0  # seconds; the emulator answers long before this
IDLE_TIMEOUT = 300.0  # seconds a keep-alive client connection may stay idle


class BadRequest(Exception):
    pass


def read_chunked(rfile: Any) -> tuple[bytes, list[bytes]]:
    """A chunked body -> (the data, the trailer lines as sent)."""
    data = bytearray()
    while True:
        line = rfile.readline(MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise BadRequest("bad chunk size line")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            break
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.read(2) != b"\r\n":
            raise BadRequest("truncated chunk")
        data += chunk
    trailers = []
    while True:
        line = rfile.readline(MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise BadRequest("bad trailer")
        if line in (b"\r\n", b"\n"):
            return bytes(data), trailers
        trailers.append(line)


def encode_chunked(data: bytes, trailers: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    head = f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""
    return head + b"0\r\n" + b"".join(trailers) + b"\r\n"


def is_chunked(headers: Any) -> bool:
    return "chunked" in ",".join(headers.get_all("Transfer-Encoding") or []).lower()


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() does not wait for keep-alive connections
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], target: tuple[str, int], min_ms: float, max_ms: float,
                 verbose: bool, replay: bool = False):
        super().__init__(address, ProxyHandler)
        self.target = target
        # (method, path, body) -> (status, reason, headers, data), with --replay.
        self.answers: dict[tuple[str, str, bytes], tuple[int, str, list[tuple[str, str]], bytes]] | None = \
            {} if replay else None
        self.answers_lock = threading.Lock()
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.verbose = verbose
        self.rng = random.Random()
        self.rng_lock = threading.Lock()

    def delay(self) -> float:
        with self.rng_lock:
            return self.rng.uniform(self.min_ms, self.max_ms) / 1000.0


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: ProxyServer

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle's algorithm
        # and the client's delayed ACK would add about 40 ms to each answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    def proxy(self) -> None:
        try:
            body, trailers, chunked = self.read_body()
        except (BadRequest, ValueError) as e:
            self.close_connection = True
            return self.plain_error(400, f"latency_proxy: bad request body: {e}")
        delay = self.server.delay()
        time.sleep(delay)
        try:
            status, reason, headers, data = self.replayed(body) or self.forward(body, trailers, chunked)
        except OSError as e:
            return self.plain_error(502, f"latency_proxy: upstream {self.server.target}: {e}")
        self.answer(status, reason, headers, data)
        if self.server.verbose:
            self.log_message('"%s" %s (+%.0f ms)', self.requestline, status, delay * 1000)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = proxy

    def read_body(self) -> tuple[bytes, list[bytes], bool]:
        if is_chunked(self.headers):
            data, trailers = read_chunked(self.rfile)
            return data, trailers, True
        length = self.headers.get("Content-Length")
        if length is None:
            return b"", [], False
        n = int(length)
        if n < 0:
            raise BadRequest("negative Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise BadRequest("body shorter than its Content-Length")
        return data, [], False

    def replayed(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
        """With --replay, the answer kept for this request, dated now."""
        if self.server.answers is None:
            return None
        with self.server.answers_lock:
            kept = self.server.answers.get((self.command, self.path, body))
        if kept is None:
            return None
        status, reason, headers, data = kept
        now = email.utils.formatdate(usegmt=True)
        return status, reason, [(n, now if n.lower() == "date" else v) for n, v in headers], data

    def forward(self, body: bytes, trailers: list[bytes],
                chunked: bool) -> tuple[int, str, list[tuple[str, str]], bytes]:
        answer = self.ask_target(body, trailers, chunked)
        if self.server.answers is not None and 200 <= answer[0] < 300:
            with self.server.answers_lock:
                self.server.answers[(self.command, self.path, body)] = answer
        return answer

    def ask_target(self, body: bytes, trailers: list[bytes],
                   chunked: bool) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self.server.target
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            # Headers and body in one segment: no Nagle/delayed-ACK stall.
            conn.endheaders(encode_chunked(body, trailers) if chunked else (body or None))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def answer(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        """The upstream answer, with this connection's own framing where it must differ."""
        names = {name.lower() for name, _ in headers}
        chunked = any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in headers)
        bodyless = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        self.send_response_only(status, reason or None)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if not chunked and "content-length" not in names and not bodyless:
            self.send_header("Content-Length", str(len(data)))  # upstream ended the body by closing
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodyless:
            self.wfile.write(encode_chunked(data) if chunked else data)

    def plain_error(self, status: int, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def fail(message: str) -> int:
    print(f"latency_proxy: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def loopback(host: str) -> str | None:
    """The loopback IP for host (localhost -> 127.0.0.1), or None."""
    host = "127.0.0.1" if host == "localhost" else host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def parse_target(text: str) -> tuple[str, int] | None:
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        return None
    if url.scheme != "http" or port is None or url.path not in ("", "/") or url.query or url.username:
        return None
    host = loopback(url.hostname or "")
    return (host, port) if host else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="loopback HTTP proxy that delays every request")
    p.add_argument("--target", required=True, help="http://127.0.0.1:PORT of the emulator")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port, 0 = any free port (default)")
    p.add_argument("--min-ms", type=float, default=30.0, help="shortest delay in ms (default 30)")
    p.add_argument("--max-ms", type=float, default=50.0, help="longest delay in ms (default 50)")
    p.add_argument("--replay", action="store_true",
                   help="answer a request seen before from memory, without asking the target")
    p.add_argument("--ready-file", help="write {endpoint, port, pid, target} here (atomically) when ready")
    p.add_argument("--verbose", action="store_true", help="log every request and its delay to stderr")
    return p.parse_args(argv)


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.write("\n")
    os.rename(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = parse_target(args.target)
    if target is None:
        return fail(f"--target must be http://<loopback address>:PORT, got {args.target!r}")
    host = loopback(args.host)
    if host is None:
        return fail(f"--host must be a loopback IP address, got {args.host!r}")
    if not 0 <= args.port <= 65535:
        return fail("--port must be 0..65535")
    if not 0 <= args.min_ms <= args.max_ms <= MAX_DELAY_MS:
        return fail(f"need 0 <= --min-ms <= --max-ms <= {MAX_DELAY_MS}")
    if ":" in host:
        ProxyServer.address_family = socket.AF_INET6
    try:
        server = ProxyServer((host, args.port), target, args.min_ms, args.max_ms, args.verbose, args.replay)
    except OSError as e:
        return fail(f"cannot bind {host}:{args.port}: {e.strerror}")
    port = server.server_address[1]
    endpoint = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    if args.ready_file:
        write_json_atomic(args.ready_file, {"endpoint": endpoint, "port": port, "pid": os.getpid(),
                                            "target": args.target})
    print(f"READY {endpoint}", flush=True)
    while not stop.wait(0.1):
        pass
    server.shutdown()
    server.server_close()
    if args.ready_file:
        try:
            os.remove(args.ready_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # request threads may sit on keep-alive sockets: do not wait for them
