#!/usr/bin/env python3
"""Crash-kill loop: agencies submit, pull and ack concurrently while the hub is SIGKILLed at
random moments and restarted. At the end it checks, from outside:

- every packet answered 2xx is fetchable by each of its recipients (0 lost);
- no item whose ack answered removed:true is listed again afterwards (0 resurrected);
- every receipt's audit_index points at its entry, and the log verifies: with
  `lienthong audit verify` and with the independent scripts/verify_log.py;
- a consistency proof holds from every tree head signed before a kill to the final one.

    scripts/crash_loop.py --bin target/release/lienthong [--kills 20] [--seed 1]
    scripts/crash_loop.py --bin … --storage postgres --faults hub,primary,standby --kills 21

With `--storage postgres` the hub stores in a PostgreSQL primary with a synchronous standby
(scripts/pg-cluster.sh) and each cycle injects the next fault of `--faults`: `hub` (SIGKILL
the hub), `primary` (SIGKILL the primary, promote the standby, make a new standby), `standby`
(SIGSTOP the standby for 1-3 s). It also reports duplicates and the longest time without
a successful write per fault (docs/ha.md).

Needs python3 with `cryptography` (scripts/pyenv.sh) and the hub binary. Prints the figures
docs/reliability.md quotes; exits non-zero on any violation.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENCIES = ["000.00.01.H13", "000.00.02.H13", "000.00.03.H13"]


class Hub:
    def __init__(self, binary, work):
        self.binary, self.work, self.proc, self.addr = binary, work, None, None

    def start(self):
        bound = os.path.join(self.work, "data", "bound.json")
        if os.path.exists(bound):
            os.remove(bound)
        c = lambda p: os.path.join(self.work, "certs", p)
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", os.path.join(self.work, "lienthong.toml"),
             "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0",
             "--data", os.path.join(self.work, "data"),
             "--agencies", os.path.join(self.work, "agencies.toml"),
             "--tls-cert", c("server.pem"), "--tls-key", c("server.key"),
             "--client-ca", c("ca.pem"), "--trust", c("trust")],
            cwd=self.work, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.work, "hub.log"), "ab"),
            env=dict(os.environ, RUST_LOG="error"))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                b = json.load(open(bound))
                self.addr = b["https"]
                return
            except (OSError, ValueError, KeyError):
                if self.proc.poll() is not None:
                    raise SystemExit(f"hub exited at start-up: {self.proc.returncode}")
                time.sleep(0.05)
        raise SystemExit("hub did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Client:
    """One agency's (or role's) HTTP/1.1 connection over mutual TLS; reconnects as needed."""

    def __init__(self, hub, cert, key):
        self.hub = hub
        self.ctx = ssl.create_default_context(cafile=os.path.join(hub.work, "certs", "ca.pem"))
        self.ctx.load_cert_chain(cert, key)
        self.conn, self.addr = None, None

    def call(self, method, path, body=None):
        """(status, headers, body bytes); raises OSError/HTTPException when the hub is down."""
        if self.conn is None or self.addr != self.hub.addr:
            host, port = self.hub.addr.rsplit(":", 1)
            self.conn = http.client.HTTPSConnection(host, int(port), context=self.ctx, timeout=30)
            self.addr = self.hub.addr
        try:
            self.conn.request(method, path, body=body)
            r = self.conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise


def agency_client(hub, a):
    d = os.path.join(hub.work, "certs", "agencies")
    return Client(hub, os.path.join(d, a + ".pem"), os.path.join(d, a + ".key"))


def make_packets(binary, work, n):
    """n signed packets per (sender, recipients), made with the CLI before the clock starts."""
    out = []
    for i in range(n):
        sender = AGENCIES[i % 3]
        to = [a for a in AGENCIES if a != sender]
        p = os.path.join(work, "p.edxml")
        subprocess.run([binary, "edxml", "new", "--from", sender, "--to", ",".join(to),
                        "--subject", f"crash loop {i}", "-o", p], check=True)
        signed = subprocess.run([binary, "sign", p, "--cert", os.path.join(work, "certs", "signing", sender + ".pem"),
                                 "--key", os.path.join(work, "certs", "signing", sender + ".key")],
                                check=True, capture_output=True).stdout
        out.append((sender, to, signed))
    return out


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {}        # id -> recipients
        self.receipts = []        # JWS
        self.removed = {}         # (agency, id) -> time the removing ack answered
        self.resurrected = []
        self.stop = False
        self.errors = 0
        self.in_doubt = 0         # 503 answers: outcome unknown to the client
        self.ok_times = []        # (time, latency) of each successful submit
        self.ids_by_packet = {}   # packet index -> ids answered for it


def submitter(hub, packets, st, rng):
    clients = {a: agency_client(hub, a) for a in AGENCIES}
    while not st.stop:
        k = rng.randrange(len(packets))
        sender, to, body = packets[k]
        started = time.time()
        try:
            status, _, b = clients[sender].call("POST", "/v1/documents", body)
        except Exception:
            time.sleep(0.05)
            continue
        if status in (200, 201):
            j = json.loads(b)
            with st.lock:
                st.accepted[j["id"]] = to
                st.receipts.append(j["receipt"])
                if status == 201:  # a new write (a replay reads only)
                    st.ok_times.append((time.time(), time.time() - started))
                st.ids_by_packet.setdefault(k, set()).add(j["id"])
        elif status == 503:
            with st.lock:
                st.in_doubt += 1
        elif status not in (409, 429, 503):
            with st.lock:
                st.errors += 1
        time.sleep(rng.random() * 0.01)


def consumer(hub, agency, st, rng):
    c = agency_client(hub, agency)
    while not st.stop:
        started = time.time()
        try:
            status, _, b = c.call("GET", "/v1/inbox?limit=20")
        except Exception:
            time.sleep(0.05)
            continue
        if status != 200:
            continue
        items = json.loads(b)["items"]
        with st.lock:
            for it in items:
                at = st.removed.get((agency, it["id"]))
                if at is not None and at < started:
                    st.resurrected.append((agency, it["id"]))
        ids = [it["id"] for it in items if rng.random() < 0.8]
        try:
            if ids and rng.random() < 0.5:
                status, _, b = c.call("POST", "/v1/inbox/ack", json.dumps({"ids": ids}).encode())
                if status == 200:
                    j = json.loads(b)
                    now = time.time()
                    with st.lock:
                        for i, res in zip(ids, j["results"]):
                            if res.get("removed") is True:
                                st.removed[(agency, i)] = now
                        if j.get("receipt"):
                            st.receipts.append(j["receipt"])
            else:
                for i in ids:
                    status, _, b = c.call("POST", f"/v1/inbox/{i}/ack")
                    if status == 200:
                        j = json.loads(b)
                        if j.get("removed") is True:
                            with st.lock:
                                st.removed[(agency, i)] = time.time()
                                if j.get("receipt"):
                                    st.receipts.append(j["receipt"])
        except Exception:
            time.sleep(0.05)


def head_payload(jws):
    import base64
    part = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--packets", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--storage", choices=["rocksdb", "postgres"], default="rocksdb")
    ap.add_argument("--faults", default="hub", help="comma-separated: hub, primary, standby")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="lienthong-crash-")
    with open(os.path.join(work, "agencies.toml"), "w") as f:
        for i, ag in enumerate(AGENCIES):
            f.write(f'[[agency]]\nid = "{ag}"\nname = "Sở {i}"\n')
    # Short leases so unacked items come back between kills; heads signed often.
    with open(os.path.join(work, "lienthong.toml"), "w") as f:
        f.write("[queue]\nlease_secs = 2\n[audit]\nhead_interval_secs = 1\nhead_every_entries = 50\n")
    pg = None
    if a.storage == "postgres":
        from pg_faults import PgCluster
        pg = PgCluster(work)
        with open(os.path.join(work, "lienthong.toml"), "a") as f:
            f.write(f'[storage]\nengine = "postgres"\nurl = "{pg.url()}"\nsync_deadline_secs = 5\n')
    faults = a.faults.split(",")
    fault_log = []
    subprocess.run([binary, "pki", "init", "--dir", os.path.join(work, "certs"),
                    "--agencies", os.path.join(work, "agencies.toml")], check=True, capture_output=True)
    print(f"making {a.packets} signed packets…", flush=True)
    packets = make_packets(binary, work, a.packets)
    hub = Hub(binary, work)
    hub.start()
    st = State()
    threads = [threading.Thread(target=submitter, args=(hub, packets, st, random.Random(a.seed + 1)))]
    threads += [threading.Thread(target=consumer, args=(hub, ag, st, random.Random(a.seed + 2 + k)))
                for k, ag in enumerate(AGENCIES)]
    for t in threads:
        t.start()
    auditor = Client(hub, os.path.join(work, "certs", "roles", "auditor.pem"),
                     os.path.join(work, "certs", "roles", "auditor.key"))
    heads = []
    for k in range(a.kills):
        time.sleep(0.5 + rng.random() * 2.5)
        try:
            status, _, b = auditor.call("GET", "/v1/audit/head")
            if status == 200:
                heads.append(b.decode())
        except Exception:
            pass
        kind = faults[k % len(faults)]
        began = time.time()
        if kind == "hub":
            hub.kill()
            time.sleep(rng.random() * 0.3)
            hub.start()
        elif kind == "primary":
            pg.fail_over()
        elif kind == "standby":
            pg.freeze_standby(1 + rng.random() * 2)
        fault_log.append((kind, began))
        print(f"fault {k + 1}/{a.kills} ({kind}): {len(st.accepted)} accepted, "
              f"{len(st.removed)} acked so far", flush=True)
    time.sleep(2)
    st.stop = True
    for t in threads:
        t.join()

    # Checks, on the final hub.
    failures = []
    lost = []
    clients = {ag: agency_client(hub, ag) for ag in AGENCIES}
    for doc, recipients in st.accepted.items():
        for r in recipients:
            status, _, _ = clients[r].call("GET", f"/v1/documents/{doc}")
            if status != 200:
                lost.append((doc, r, status))
    # Listing again after the loop: nothing removed may come back.
    for ag in AGENCIES:
        for _ in range(3):
            status, _, b = clients[ag].call("GET", "/v1/inbox?limit=1000")
            for it in json.loads(b)["items"]:
                if (ag, it["id"]) in st.removed:
                    st.resurrected.append((ag, it["id"]))
    status, _, head = auditor.call("GET", "/v1/audit/head")
    head = head.decode()
    size = head_payload(head)["tree_size"]
    status, _, export = auditor.call("GET", f"/v1/audit/export?size={size}")
    files = lambda n: os.path.join(work, n)
    open(files("head.jws"), "w").write(head)
    open(files("export.jsonl"), "wb").write(export)
    open(files("receipts.txt"), "w").write("\n".join(st.receipts))
    cons = []
    for k, h in enumerate(heads):
        old = head_payload(h)["tree_size"]
        status, _, proof = auditor.call("GET", f"/v1/audit/consistency?from={old}&to={size}")
        if status != 200:
            failures.append(f"no consistency proof from {old}: {status}")
            continue
        open(files(f"old-{k}.jws"), "w").write(h)
        open(files(f"cons-{k}.json"), "wb").write(proof)
        cons += ["--consistency", f"{files(f'old-{k}.jws')}:{files(f'cons-{k}.json')}"]
    hub.stop()
    r = subprocess.run([binary, "audit", "verify", "--export", files("export.jsonl"), "--tree-head",
                        files("head.jws"), "--hub-cert", files("certs/hub-signing.pem")], capture_output=True)
    if r.returncode != 0:
        failures.append("lienthong audit verify: " + r.stderr.decode()[-500:])
    r = subprocess.run([sys.executable, os.path.join(HERE, "verify_log.py"), "--export", files("export.jsonl"),
                        "--head", files("head.jws"), "--hub-cert", files("certs/hub-signing.pem"),
                        "--receipts", files("receipts.txt")] + cons, capture_output=True)
    if r.returncode != 0:
        failures.append("verify_log.py: " + r.stderr.decode()[-500:])
    checked = sum(len(v) for v in st.accepted.values())
    duplicates = sum(len(v) - 1 for v in st.ids_by_packet.values() if len(v) > 1)
    times = sorted(t for t, _ in st.ok_times)
    gaps = {}
    for kind, began in fault_log:
        before = [t for t in times if t <= began]
        after = [t for t in times if t > began]
        if before and after:
            gaps.setdefault(kind, []).append(round(after[0] - before[-1], 2))
    lat = sorted(l for _, l in st.ok_times)
    pct = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1000, 1) if lat else None
    if pg:
        pg.stop()
    print(json.dumps({
        "kills": a.kills, "documents": len(st.accepted), "deliveries_checked": checked,
        "lost": len(lost), "acked": len(st.removed), "resurrected": len(st.resurrected),
        "receipts_checked": len(st.receipts), "heads_before_kills": len(heads),
        "log_entries": size, "unexpected_statuses": st.errors,
        "independent_verifier": r.stdout.decode().strip(),
        "storage": a.storage, "faults": {k: sum(1 for f, _ in fault_log if f == k) for k in faults},
        "in_doubt_503": st.in_doubt, "duplicates": duplicates,
        "max_secs_without_writes": {k: max(v) for k, v in gaps.items()},
        "median_secs_without_writes": {k: sorted(v)[len(v) // 2] for k, v in gaps.items()},
        "submit_p50_ms": pct(0.5), "submit_p99_ms": pct(0.99),
    }, indent=1))
    if duplicates:
        failures.append(f"duplicates: {duplicates}")
    if lost:
        failures.append(f"lost: {lost[:10]}")
    if st.resurrected:
        failures.append(f"resurrected: {st.resurrected[:10]}")
    if failures:
        print("FAILED:\n" + "\n".join(failures), file=sys.stderr)
        print(f"work directory kept: {work}", file=sys.stderr)
        return 1
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
