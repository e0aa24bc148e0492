#!/usr/bin/env python3
"""Crash-kill loop: agencies submit, pull and ack concurrently while the hub is SIGKILLed at
random moments and restarted. At the end it checks, from outside:

- every packet answered 2xx is fetchable by each of its recipients (0 lost);
- no item whose ack answered removed:true is listed again afterwards (0 resurrected);
- every receipt's audit_index points at its entry, and the log verifies: with
  `lienthong audit verify` and with the independent scripts/verify_log.py;
- a consistency proof holds from every tree head signed before a kill to the final one.

    scripts/crash_loop.py --bin target/release/lienthong [--kills 20] [--seed 1]
    scripts/crash_loop.py --bin … --storage postgres [--ha plain|patroni] --kills 24

With `--storage postgres` the hub stores in a three-node PostgreSQL cluster (scripts/pg_faults.py:
`plain` replication with failover by hand, or `patroni` with etcd) and each cycle injects the
next fault of `--faults` (default hub,primary,standby,standbys): `hub` (SIGKILL the hub,
restart it), `primary` (the primary dies and a standby takes over), `standby` (SIGSTOP a
synchronous standby for 1-3 s), `standbys` (SIGSTOP both standbys for 1-3 s). It also
reports duplicates, the time without a successful write per fault, and submit latency
before, during and after each kind of fault (docs/ha.md).

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
        """(status, headers, body bytes); raises OSError/HTTPException when the hub is down.
        A GET is sent again once if a kept-alive connection turns out closed."""
        if method == "GET" and self.conn is not None:
            try:
                return self.send(method, path, body)
            except Exception:
                pass
        return self.send(method, path, body)

    def send(self, method, path, body):
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


def make_packet(binary, work, i):
    """Packet i: signed by AGENCIES[i % 3] for the two others, made with the CLI."""
    sender = AGENCIES[i % 3]
    to = [a for a in AGENCIES if a != sender]
    new = subprocess.run([binary, "edxml", "new", "--from", sender, "--to", ",".join(to),
                          "--subject", f"crash loop {i}", "--agencies",
                          os.path.join(work, "agencies.toml")], check=True, capture_output=True).stdout
    signed = subprocess.run([binary, "sign", "-", "--cert", os.path.join(work, "certs", "signing", sender + ".pem"),
                             "--key", os.path.join(work, "certs", "signing", sender + ".key")],
                            input=new, check=True, capture_output=True).stdout
    return sender, to, signed


class Packets:
    """Signed packets, `first` made before the clock starts and more made by two background
    workers while the loop runs (`more`), so the submitter keeps writing new documents
    rather than replaying old ones; `get(k)` waits for packet k while workers still make them."""

    def __init__(self, binary, work, first, more):
        self.binary, self.work, self.made, self.total = binary, work, [], first + more
        self.cond, self.stop = threading.Condition(), False
        self.workers = [threading.Thread(target=self.work_loop, args=(w,), daemon=True) for w in range(2)]
        for w in self.workers:
            w.start()
        with self.cond:
            self.cond.wait_for(lambda: len(self.made) >= first)

    def work_loop(self, w):
        i = w
        while not self.stop and i < self.total:
            p = make_packet(self.binary, self.work, i)
            with self.cond:
                self.made.append(p)
                self.cond.notify_all()
            i += 2

    def get(self, k):
        """Packet k, or None once every packet is made and k is past the last."""
        with self.cond:
            self.cond.wait_for(lambda: k < len(self.made) or len(self.made) >= self.total or self.stop)
            return self.made[k] if k < len(self.made) else None

    def __len__(self):
        with self.cond:
            return len(self.made)


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
        self.attempts = []        # (start, end, status or None) of every submit
        self.ids_by_packet = {}   # packet index -> ids answered for it


def submitter(hub, packets, st, rng):
    """Sends the packets in order, as an agency's system would: after no answer or a 503
    (outcome unknown) it sends the same packet again (the retry must not duplicate), and one
    time in ten it sends an earlier packet again (a replay). Past the last packet, replays."""
    clients = {a: agency_client(hub, a) for a in AGENCIES}
    cursor, retry = 0, None
    while not st.stop:
        if retry is not None:
            k, retry = retry, None
        elif cursor and rng.random() < 0.1:
            k = rng.randrange(cursor)
        else:
            k = cursor
        packet = packets.get(k)
        if packet is None:
            k = rng.randrange(len(packets))
            packet = packets.get(k)
        elif k == cursor:
            cursor += 1
        sender, to, body = packet
        started = time.time()
        try:
            status, _, b = clients[sender].call("POST", "/v1/documents", body)
        except Exception:
            with st.lock:
                st.attempts.append((started, time.time(), None))
            retry = k
            time.sleep(0.05)
            continue
        with st.lock:
            st.attempts.append((started, time.time(), status))
        if status in (200, 201):
            j = json.loads(b)
            with st.lock:
                st.accepted[j["id"]] = to
                st.receipts.append(j["receipt"])
                if status == 201:  # a new write (a replay reads only)
                    st.ok_times.append((time.time(), time.time() - started))
                st.ids_by_packet.setdefault(k, set()).add(j["id"])
        elif status == 503:
            retry = k
            with st.lock:
                st.in_doubt += 1
        elif status == 429:
            retry = k
        elif status != 409:
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


def phases(attempts, fault_log, window):
    """Submit latency (p50/p99 ms of 201 answers) and failed attempts (503, no answer)
    before, during and after each kind of fault: `before` is the `window` seconds before it
    began, `during` every attempt in flight while it was being injected and undone, `after`
    the `window` seconds after it ended (cut at the next fault)."""
    out = {}
    for k, (kind, began, ended) in enumerate(fault_log):
        nxt = fault_log[k + 1][1] if k + 1 < len(fault_log) else float("inf")
        windows = {
            "before": lambda s, e: s >= began - window and e <= began,
            "during": lambda s, e: s < ended and e > began,
            "after": lambda s, e: s >= ended and s < min(ended + window, nxt),
        }
        for phase, inside in windows.items():
            acc = out.setdefault(kind, {}).setdefault(phase, {"ok": [], "failed": 0})
            for s, e, status in attempts:
                if inside(s, e):
                    if status == 201:  # new writes only: a replay does not commit
                        acc["ok"].append(e - s)
                    elif status in (None, 503):
                        acc["failed"] += 1
    for kind in out.values():
        for phase, acc in kind.items():
            lat = sorted(acc.pop("ok"))
            at = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1000, 1) if lat else None
            acc.update(answered=len(lat), p50_ms=at(0.5), p99_ms=at(0.99))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--packets", type=int, default=300)
    ap.add_argument("--more-packets", type=int, default=0,
                    help="packets made while the loop runs (new writes all along)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--storage", choices=["rocksdb", "postgres"], default="rocksdb")
    ap.add_argument("--faults", help="comma-separated: hub, primary, standby, standbys "
                    "(default: hub; with postgres all four)")
    ap.add_argument("--ha", choices=["plain", "patroni"], default="plain",
                    help="the PostgreSQL cluster: plain replication or Patroni + etcd")
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
        import pg_faults
        pg = pg_faults.PatroniCluster(work) if a.ha == "patroni" else pg_faults.PlainCluster(work)
        with open(os.path.join(work, "lienthong.toml"), "a") as f:
            f.write(f'[storage]\nengine = "postgres"\nurl = "{pg.url()}"\nsync_deadline_secs = 5\n')
    faults = (a.faults or ("hub,primary,standby,standbys" if pg else "hub")).split(",")
    fault_log = []
    subprocess.run([binary, "pki", "init", "--dir", os.path.join(work, "certs"),
                    "--agencies", os.path.join(work, "agencies.toml")], check=True, capture_output=True)
    print(f"making {a.packets} signed packets (and {a.more_packets} more while it runs)…", flush=True)
    packets = Packets(binary, work, a.packets, a.more_packets)
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
    settle = 3.0 if pg else 0.5  # quiet time before a fault: the "before" window
    for k in range(a.kills):
        time.sleep(settle + rng.random() * 2.5)
        for _ in range(20):  # the head signed last before this fault (retried: a fault may go on)
            try:
                status, _, b = auditor.call("GET", "/v1/audit/head")
                if status == 200:
                    heads.append(b.decode())
                    break
            except Exception:
                pass
            time.sleep(0.5)
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
        elif kind == "standbys":
            pg.freeze_standbys(1 + rng.random() * 2)
        fault_log.append((kind, began, time.time()))
        print(f"fault {k + 1}/{a.kills} ({kind}): {len(st.accepted)} accepted, "
              f"{len(st.removed)} acked so far", flush=True)
    time.sleep(settle)
    st.stop = True
    packets.stop = True
    with packets.cond:
        packets.cond.notify_all()
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
    for kind, began, ended in fault_log:
        # The longest pause between two successful new writes from the last one before the
        # fault to the first one after it ended.
        seq = [t for t in times if t <= began][-1:] + [t for t in times if began < t <= ended]
        seq += [t for t in times if t > ended][:1]
        if len(seq) > 1:
            gaps.setdefault(kind, []).append(round(max(b - a for a, b in zip(seq, seq[1:])), 2))
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
        "storage": a.storage, "cluster": pg.describe() if pg else None,
        "faults": {k: sum(1 for f, _, _ in fault_log if f == k) for k in faults},
        "in_doubt_503": st.in_doubt, "duplicates": duplicates,
        "max_secs_without_writes": {k: max(v) for k, v in gaps.items()},
        "median_secs_without_writes": {k: sorted(v)[len(v) // 2] for k, v in gaps.items()},
        "submit_p50_ms": pct(0.5), "submit_p99_ms": pct(0.99),
        "latency_by_fault": phases(st.attempts, fault_log, settle),
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
