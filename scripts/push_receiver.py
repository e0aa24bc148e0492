#!/usr/bin/env python3
"""An independent push endpoint for lienthong's tests (standard library only: http.server + ssl).

    push_receiver.py --cert C --key K --ca CA --log LOG --port-file F
                     [--statuses 503,503] [--then 200] [--retry-after N] [--delays 10,0]

Listens on 127.0.0.1 (any free port, written to --port-file) over TLS that *requires* a client
certificate chaining to --ca. Every POST is appended to --log as one JSON line: arrival time,
path, headers, the client certificate's subject CN, the body's SHA-256 and the body itself
(base64). Answers come from --statuses in turn, then --then for every later request;
--retry-after adds that header to non-2xx answers; --delays sleeps that many seconds before
answering the first requests, in turn.
"""
import argparse
import base64
import hashlib
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--ca", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--port-file", required=True)
parser.add_argument("--statuses", default="")
parser.add_argument("--then", type=int, default=200)
parser.add_argument("--retry-after", type=int, default=None)
parser.add_argument("--delays", default="")
args = parser.parse_args()

statuses = [int(s) for s in args.statuses.split(",") if s]
delays = [float(s) for s in args.delays.split(",") if s]
lock = threading.Lock()


def next_status():
    with lock:
        return statuses.pop(0) if statuses else args.then


def next_delay():
    with lock:
        return delays.pop(0) if delays else 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        cert = self.connection.getpeercert() or {}
        cn = None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
        record = {
            "t": time.time(),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "cn": cn,
            "sha256": hashlib.sha256(body).hexdigest(),
            "body": base64.b64encode(body).decode(),
        }
        with lock:
            with open(args.log, "a") as f:
                f.write(json.dumps(record) + "\n")
        delay = next_delay()
        if delay:
            time.sleep(delay)
        status = next_status()
        answer = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "test"}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        if args.retry_after is not None and not 200 <= status < 300:
            self.send_header("retry-after", str(args.retry_after))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *a):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
ctx.load_verify_locations(args.ca)
ctx.verify_mode = ssl.CERT_REQUIRED
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402

os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
