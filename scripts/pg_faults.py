"""PostgreSQL faults for scripts/crash_loop.py --storage postgres (docs/ha.md): a primary and
one synchronous standby made by scripts/pg-cluster.sh, and the faults a cycle injects —
the primary SIGKILLed and the standby promoted (then a new standby made from it, so commits
are synchronous again), or the standby frozen with SIGSTOP for a while."""

import os
import shutil
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def as_pg(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, **kw)


def free_ports():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p < 65000:
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p + 1))
                t.close()
                return p
            except OSError:
                t.close()


class PgCluster:
    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        self.port = free_ports()
        out = subprocess.run(["bash", os.path.join(HERE, "pg-cluster.sh"), "start", self.dir,
                              str(self.port)], check=True, capture_output=True, text=True)
        self.single_url = out.stdout.strip().splitlines()[-1]
        # Node directories and their ports: the primary, then the standby.
        self.nodes = [("primary", self.port), ("standby", self.port + 1)]

    def url(self):
        """Both nodes; the client picks the one that takes writes."""
        hosts = ",".join(f"127.0.0.1:{p}" for _, p in self.nodes)
        return f"postgresql://postgres@{hosts}/lienthong?target_session_attrs=read-write"

    def pid(self, node):
        return int(open(os.path.join(self.dir, node, "postmaster.pid")).readline())

    def signal_node(self, node, sig):
        pid = self.pid(node)
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for p in [pid] + [int(k) for k in kids]:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def freeze_standby(self, secs):
        standby = self.nodes[1][0]
        self.signal_node(standby, signal.SIGSTOP)
        time.sleep(secs)
        self.signal_node(standby, signal.SIGCONT)

    def fail_over(self):
        """SIGKILL the primary, promote the standby, make a new standby from it (in the old
        primary's place and port, named standby1 so commits wait for it again)."""
        (old, old_port), (new, new_port) = self.nodes
        self.signal_node(old, signal.SIGKILL)
        as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, new), "-w", "promote"])
        killed_at = time.time()
        # The old primary's processes are gone: its directory is rebuilt from the new one.
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", os.path.join(self.dir, old) + "$"],
                              capture_output=True).returncode != 0:
                break
            time.sleep(0.05)
        shutil.rmtree(os.path.join(self.dir, old))
        as_pg([f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(new_port), "-U", "postgres",
               "-D", os.path.join(self.dir, old), "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        with open(os.path.join(self.dir, old, "postgresql.auto.conf"), "a") as f:
            f.write(f"port = {old_port}\nprimary_conninfo = 'host=127.0.0.1 port={new_port} "
                    f"user=postgres application_name=standby1'\n")
        # The killed postmaster's socket and its lock stay behind in the socket directory.
        for stale in (f".s.PGSQL.{old_port}", f".s.PGSQL.{old_port}.lock"):
            if os.path.exists(os.path.join(self.dir, stale)):
                os.remove(os.path.join(self.dir, stale))
        as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, old), "-l",
               os.path.join(self.dir, old + ".log"), "-w", "start"])
        self.nodes = [(new, new_port), (old, old_port)]
        return time.time() - killed_at

    def stop(self):
        for node, _ in self.nodes:
            try:
                as_pg([f"{BIN}/pg_ctl", "-D", os.path.join(self.dir, node), "-m", "fast", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
