#!/usr/bin/env python3
"""An independent HTTP/3 client (aioquic) for tests/http3.rs: mutual TLS with an agency
certificate, a list of requests on one QUIC connection, one JSON line of results.

    h3_client.py --port P --ca CA --cert C --key K [--zero-rtt] 'GET /v1/inbox' 'POST /v1/documents @packet.xml'

Each result: status, headers, the body's SHA-256 and, when it is UTF-8, the body itself; a
failed handshake prints {"error": ...} and exits 2. With --zero-rtt a first connection takes a
session ticket and the requests go out on a second connection as early data (0-RTT) if the
ticket allows it; the result says whether the ticket offered early data and whether the hub
accepted it.
"""
import argparse
import asyncio
import hashlib
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StopSendingReceived


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.pending = {}
        self.stop_sending = []  # error codes of STOP_SENDING frames received

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            # With TLS 1.3 the client's certificate is judged after the client considers the
            # handshake done: a refusal arrives as the connection's close.
            for fut, _ in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(
                        f"connection closed: error {event.error_code:#x}: {event.reason_phrase}"))
            return
        if isinstance(event, StopSendingReceived):
            self.stop_sending.append(event.error_code)
        for ev in self.http.handle_event(event):
            if isinstance(ev, (HeadersReceived, DataReceived)) and ev.stream_id in self.pending:
                fut, answer = self.pending[ev.stream_id]
                if isinstance(ev, HeadersReceived):
                    answer["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
                else:
                    answer["body"] += ev.data
                if ev.stream_ended and not fut.done():
                    fut.set_result(answer)

    async def request(self, method, authority, path, body):
        sid = self._quic.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":scheme", b"https"),
                   (b":authority", authority.encode()), (b":path", path.encode())]
        if body:
            headers.append((b"content-type", b"application/xml"))
            headers.append((b"content-length", str(len(body)).encode()))
        fut = asyncio.get_running_loop().create_future()
        self.pending[sid] = (fut, {"headers": {}, "body": b""})
        self.http.send_headers(sid, headers, end_stream=not body)
        if body:
            self.http.send_data(sid, body, end_stream=True)
        self.transmit()
        return await asyncio.wait_for(fut, 30)


def result(answer):
    body = answer["body"]
    out = {"status": int(answer["headers"].get(":status", "0")), "headers": answer["headers"],
           "sha256": hashlib.sha256(body).hexdigest()}
    try:
        out["body"] = body.decode()
    except UnicodeDecodeError:
        out["body"] = None
    return out


async def run(args):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name=args.server_name)
    config.load_verify_locations(args.ca)
    if args.cert:
        config.load_cert_chain(args.cert, args.key)
    tickets = []
    config.session_ticket_handler = tickets.append
    config.idle_timeout = 5.0  # a refused handshake fails fast
    authority = f"{args.server_name}:{args.port}"
    report = {}
    if args.zero_rtt:
        async with connect(args.host, args.port, configuration=config, create_protocol=Client) as c:
            await c.request("GET", authority, "/v1/inbox?limit=1", b"")
            await asyncio.sleep(0.2)  # the ticket arrives after the handshake
        report["ticket"] = bool(tickets)
        report["ticket_early_data"] = bool(tickets and tickets[-1].max_early_data_size)
        if tickets:
            config.session_ticket = tickets[-1]
    requests = []
    for spec in args.requests:
        parts = spec.split(" ")
        body = open(parts[2][1:], "rb").read() if len(parts) > 2 else b""
        requests.append((parts[0], parts[1], body))
    async with connect(args.host, args.port, configuration=config, create_protocol=Client,
                       wait_connected=not args.zero_rtt) as c:
        answers = [result(await c.request(m, authority, p, b)) for m, p, b in requests]
        await asyncio.sleep(0.1)  # a late STOP_SENDING would arrive now
        report["stop_sending"] = c.stop_sending
        report["early_data_accepted"] = bool(getattr(c._quic.tls, "early_data_accepted", False))
        report["resumed"] = bool(getattr(c._quic.tls, "session_resumed", False))
    report["answers"] = answers
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-name", default="localhost")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--zero-rtt", action="store_true")
    ap.add_argument("requests", nargs="*")
    args = ap.parse_args()
    try:
        report = asyncio.run(asyncio.wait_for(run(args), 60))
    except Exception as e:  # a refused handshake surfaces as a connection error
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
