"""PostgreSQL clusters and their faults for scripts/crash_loop.py --storage postgres
(docs/ha.md). Two kinds of three-node cluster, with the same interface:

- `PlainCluster`: a primary and two standbys made by scripts/pg-cluster.sh, the primary
  waiting for ANY 1 of them at COMMIT; failover is done here, by hand, as an operator would:
  SIGKILL the primary, promote the standby that received the most WAL (with ANY 1 only one
  standby is sure to hold the last acknowledged commit), point the other standby at it, and
  rebuild the old primary as a standby with pg_basebackup.
- `PatroniCluster`: three Patroni (Debian's patroni 3.0) nodes with one etcd member, in
  `synchronous_mode` (strict: no commit without a synchronous standby); failover is
  Patroni's own: the leader's machine "dies" (Patroni and PostgreSQL SIGKILLed together), a
  synchronous standby takes the leader key when it expires (ttl), and the dead node is
  started again and rejoins as a replica (pg_rewind).

Faults: `fail_over()`, `freeze_standby(secs)` (SIGSTOP one synchronous standby),
`freeze_standbys(secs)` (both standbys). Each returns once the fault has been injected and
undone; the caller measures what the hub did meanwhile.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def as_pg(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, **kw)


def free_ports(n):
    """The first of n free consecutive ports on 127.0.0.1, below Linux's ephemeral range
    (32768-60999): a node restarted on its port must not find it taken by some client's
    outgoing connection."""
    while True:
        p = random.randrange(20000, 32000 - n)
        held = []
        try:
            for q in range(p, p + n):
                t = socket.socket()
                held.append(t)
                t.bind(("127.0.0.1", q))
            return p
        except OSError:
            pass
        finally:
            for t in held:
                t.close()


def signal_tree(pid, sig):
    """Signals a process and its children (a postmaster and its backends, WAL receiver…)."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid] + [int(k) for k in kids]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class PlainCluster:
    """A primary and `standbys` synchronous candidates (ANY 1) by scripts/pg-cluster.sh."""

    def __init__(self, work, standbys=2):
        self.dir = os.path.join(work, "pg")
        port = free_ports(standbys + 1)
        subprocess.run(["bash", os.path.join(HERE, "pg-cluster.sh"), "start", self.dir,
                        str(port), str(standbys)], check=True, capture_output=True, text=True)
        # [directory, port, application name]; the primary first. A node keeps its directory
        # and port for life; the name it streams under travels (see fail_over).
        self.nodes = [["primary", port, None]]
        for n in range(1, standbys + 1):
            self.nodes.append(["standby" if n == 1 else f"standby{n}", port + n, f"standby{n}"])

    def url(self):
        """Every node; the client picks the one that takes writes."""
        hosts = ",".join(f"127.0.0.1:{p}" for _, p, _ in self.nodes)
        return f"postgresql://postgres@{hosts}/lienthong?target_session_attrs=read-write"

    def pid(self, node):
        return int(open(os.path.join(self.dir, node, "postmaster.pid")).readline())

    def sql(self, port, query):
        return as_pg([f"{BIN}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                      "-Atc", query], text=True).stdout.strip()

    def freeze_standby(self, secs):
        self.freeze(self.nodes[1:2], secs)

    def freeze_standbys(self, secs):
        self.freeze(self.nodes[1:], secs)

    def freeze(self, nodes, secs):
        for d, _, _ in nodes:
            signal_tree(self.pid(d), signal.SIGSTOP)
        time.sleep(secs)
        for d, _, _ in nodes:
            signal_tree(self.pid(d), signal.SIGCONT)

    def conninfo(self, port, name):
        return f"host=127.0.0.1 port={port} user=postgres application_name={name}"

    def fail_over(self):
        old, *standbys = self.nodes
        signal_tree(self.pid(old[0]), signal.SIGKILL)
        # Only a standby holding every acknowledged commit may be promoted: the one that
        # received the most WAL (the primary is dead, so the figures no longer move).
        best = max(standbys, key=lambda n: lsn(self.sql(n[1], "SELECT pg_last_wal_receive_lsn()")))
        as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, best[0]), "-w", "promote"])
        for n in standbys:
            if n is not best:
                # primary_conninfo is reloadable (PostgreSQL ≥ 13): the WAL receiver restarts
                # and follows the new timeline.
                with open(os.path.join(self.dir, n[0], "postgresql.auto.conf"), "a") as f:
                    f.write(f"primary_conninfo = '{self.conninfo(best[1], n[2])}'\n")
                as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, n[0]), "reload"])
        # The old primary comes back as a standby under the promoted node's name, so the
        # primary again has two synchronous candidates.
        name, best[2] = best[2], None
        self.rebuild(old, best[1], name)
        self.nodes = [best] + [n for n in standbys if n is not best] + [old]

    def rebuild(self, node, primary_port, name):
        d, port, _ = node
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", os.path.join(self.dir, d) + "$"],
                              capture_output=True).returncode != 0:
                break
            time.sleep(0.05)
        shutil.rmtree(os.path.join(self.dir, d))
        as_pg([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
               "-D", os.path.join(self.dir, d), "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        with open(os.path.join(self.dir, d, "postgresql.auto.conf"), "a") as f:
            f.write(f"port = {port}\nprimary_conninfo = '{self.conninfo(primary_port, name)}'\n")
        # The killed postmaster's socket and its lock stay behind in the socket directory.
        for stale in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
            if os.path.exists(os.path.join(self.dir, stale)):
                os.remove(os.path.join(self.dir, stale))
        as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, d), "-l",
               os.path.join(self.dir, d + ".log"), "-w", "start"])
        node[2] = name

    def describe(self):
        return "3 nodes, plain streaming replication, ANY 1 (standby1, standby2), failover by hand"

    def stop(self):
        for d, _, _ in self.nodes:
            try:
                as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, d), "-m", "fast", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass


PATRONI_YML = """\
scope: lienthong
name: {name}
log: {{level: WARNING, dir: {dir}/{name}-log}}
restapi: {{listen: "127.0.0.1:{rest}", connect_address: "127.0.0.1:{rest}"}}
etcd3: {{hosts: "127.0.0.1:{etcd}"}}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        wal_log_hints: "on"
        hot_standby: "on"
        synchronous_commit: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb: [{{encoding: UTF8}}]
  pg_hba:
    - local all all trust
    - host replication all 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: "127.0.0.1:{port}"
  connect_address: "127.0.0.1:{port}"
  data_dir: {dir}/{name}
  bin_dir: {bin}
  pgpass: {dir}/{name}.pgpass
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser: {{username: postgres, password: lienthong}}
    replication: {{username: postgres, password: lienthong}}
    rewind: {{username: postgres, password: lienthong}}
  parameters: {{unix_socket_directories: "{dir}"}}
"""


class PatroniCluster:
    """Three Patroni nodes and one etcd member on 127.0.0.1 (`ttl` is Patroni's leader key
    lifetime: the longest a dead leader keeps the key, so the bound on failover time)."""

    def __init__(self, work, ttl=10):
        self.dir = os.path.join(work, "patroni")
        os.makedirs(self.dir)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            os.chmod(work, 0o755)
        etcd = free_ports(2)
        self.etcd = subprocess.Popen(
            ["etcd", "--name", "e1", "--data-dir", os.path.join(work, "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{etcd}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd}",
             "--listen-peer-urls", f"http://127.0.0.1:{etcd + 1}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd + 1}",
             "--initial-cluster", f"e1=http://127.0.0.1:{etcd + 1}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "etcd.log"), "ab"))
        self.wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{etcd}/health", timeout=1), 30)
        base = free_ports(6)
        self.nodes = {}
        for k in range(3):
            name = f"pg{k + 1}"
            cfg = os.path.join(self.dir, name + ".yml")
            with open(cfg, "w") as f:
                f.write(PATRONI_YML.format(name=name, dir=self.dir, rest=base + 3 + k, etcd=etcd,
                                           port=base + k, bin=BIN, ttl=ttl))
            os.makedirs(os.path.join(self.dir, name + "-log"), exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(cfg, "postgres")
                shutil.chown(os.path.join(self.dir, name + "-log"), "postgres")
            self.nodes[name] = {"port": base + k, "rest": base + 3 + k, "cfg": cfg, "proc": None}
        for name in self.nodes:
            self.start_node(name)
        leader = self.wait(self.leader, 120)
        self.wait(lambda: len(self.streaming()) == 2, 120)
        subprocess.run([f"{BIN}/psql", "-h", "127.0.0.1", "-p", str(self.nodes[leader]["port"]),
                        "-U", "postgres", "-qc", "CREATE DATABASE lienthong"],
                       check=True, capture_output=True)

    @staticmethod
    def wait(probe, secs):
        deadline = time.time() + secs
        while True:
            try:
                got = probe()
                if got:
                    return got
            except Exception:
                if time.time() > deadline:
                    raise
            if time.time() > deadline:
                raise SystemExit(f"cluster not ready after {secs} s")
            time.sleep(0.2)

    def start_node(self, name):
        n = self.nodes[name]
        args = ["patroni", n["cfg"]]
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--"] + args
        # Its own session: the whole "machine" (Patroni and its PostgreSQL) is one group.
        n["proc"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True,
                                     stderr=open(os.path.join(self.dir, name + ".out"), "ab"))

    def status(self):
        """Patroni's view of the cluster: {name: member} from any live node."""
        for n in self.nodes.values():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n['rest']}/cluster", timeout=1) as r:
                    return {m["name"]: m for m in json.load(r)["members"]}
            except OSError:
                continue
        return {}

    def leader(self):
        return next((k for k, m in self.status().items()
                     if m["role"] == "leader" and m["state"] == "running"), None)

    def streaming(self):
        return [k for k, m in self.status().items()
                if m["role"] in ("sync_standby", "replica") and m["state"] in ("streaming", "running")]

    def url(self):
        hosts = ",".join(f"127.0.0.1:{n['port']}" for n in self.nodes.values())
        return f"postgresql://postgres@{hosts}/lienthong?target_session_attrs=read-write"

    def machine(self, name, sig):
        """Signals a node's Patroni, its PostgreSQL and their children."""
        os.killpg(self.nodes[name]["proc"].pid, sig)
        pidfile = os.path.join(self.dir, name, "postmaster.pid")
        try:
            signal_tree(int(open(pidfile).readline()), sig)
        except (OSError, ValueError):
            pass

    def fail_over(self):
        old = self.wait(self.leader, 60)
        self.machine(old, signal.SIGKILL)
        self.nodes[old]["proc"].wait()
        new = self.wait(lambda: (lambda l: l if l and l != old else None)(self.leader()), 120)
        for stale in (f".s.PGSQL.{self.nodes[old]['port']}", f".s.PGSQL.{self.nodes[old]['port']}.lock"):
            if os.path.exists(os.path.join(self.dir, stale)):
                os.remove(os.path.join(self.dir, stale))
        self.start_node(old)
        # Back to a full cluster before the next fault: both replicas streaming.
        self.wait(lambda: len(self.streaming()) == 2, 180)
        return new

    def sync_standby(self):
        return next((k for k, m in self.status().items() if m["role"] == "sync_standby"), None)

    def freeze_standby(self, secs):
        self.freeze([self.wait(self.sync_standby, 60)], secs)

    def freeze_standbys(self, secs):
        leader = self.wait(self.leader, 60)
        self.freeze([k for k in self.nodes if k != leader], secs)

    def freeze(self, names, secs):
        for k in names:
            self.machine(k, signal.SIGSTOP)
        time.sleep(secs)
        for k in names:
            self.machine(k, signal.SIGCONT)
        self.wait(lambda: len(self.streaming()) == 2, 120)

    def describe(self):
        return "3 Patroni 3.0 nodes + 1 etcd, synchronous_mode_strict, failover by Patroni"

    def stop(self):
        for name, n in self.nodes.items():
            if n["proc"] and n["proc"].poll() is None:
                n["proc"].send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            if n["proc"]:
                try:
                    n["proc"].wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(n["proc"].pid, signal.SIGKILL)
        self.etcd.send_signal(signal.SIGTERM)
        self.etcd.wait(timeout=30)
