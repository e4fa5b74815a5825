#!/usr/bin/env python3
"""vhost-user-blk data-path benchmark: our storage-daemon against
qemu-storage-daemon, alternating in one run, the same libblkio front end
(tools/blkio-drive bench) for both.

Each repetition starts every server on its own fresh copy of the same
random image on /dev/shm, then runs each workload against every server
in turn (the order rotates between repetitions), so that a busy moment
of the machine hits both; the server's CPU time (utime+stime of
/proc/PID/stat, all threads) is read around each run. The summary prints per workload the median of the runs,
our ratio to qsd next to the issue's target, and the server CPU time per
request.

Run through bench/vhost-user-blk.sh, which builds both binaries.
Environment: REPS (5), DUR (seconds per workload, 3), IMG_SIZE (MiB,
1024), SERVERS (ours,qsd), METRICS (comma list, default all), OURS (our
binary), DRIVE (blkio-drive binary).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import cpu_seconds, qemu_node_and_monitor, stop

REPS = int(os.environ.get("REPS", "5"))
DUR = float(os.environ.get("DUR", "3"))
IMG_MIB = int(os.environ.get("IMG_SIZE", "1024"))
OURS = os.environ.get("OURS", "target/release/storage-daemon")
DRIVE = os.environ.get("DRIVE", "target/release/blkio-drive")
SERVERS = os.environ.get("SERVERS", "ours,qsd").split(",")

# name -> (blkio-drive bench arguments, unit, target for ours/qsd)
METRICS = {
    "randread4k.qd32": (["--rw", "randread", "--bs", "4096", "--iodepth", "32"], "IOPS", ">=1.2"),
    "randread4k.qd1.poll": (["--rw", "randread", "--bs", "4096", "--iodepth", "1", "--poll"],
                            "IOPS", ">=1.2"),
    "randwrite4k.qd32": (["--rw", "randwrite", "--bs", "4096", "--iodepth", "32"], "IOPS", ">=1.0"),
    "read1m.qd4": (["--rw", "read", "--bs", "1048576", "--iodepth", "4"], "MiB/s", ">=1.0"),
    "write1m.qd4": (["--rw", "write", "--bs", "1048576", "--iodepth", "4"], "MiB/s", ">=1.0"),
}
# CPU per request: the target at depth 32.
CPU_TARGETS = {"randread4k.qd32": "<=0.7", "randwrite4k.qd32": "<=0.7"}


def server_cmd(kind, img, sock, qmp):
    # The yardstick's preset (../shared/bench/peer-bench.sh, qsd-vhost),
    # the same for ours and qsd: file node with cache.direct=off under a
    # raw node, one queue.
    args = qemu_node_and_monitor(img, qmp) + [
        "--export", f"type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,"
                    f"addr.path={sock},writable=on,num-queues=1",
    ]
    if kind == "ours":
        return [OURS] + args
    if kind == "qsd":
        return ["qemu-storage-daemon"] + args
    raise SystemExit(f"unknown server {kind}")


def monitor_answers(path):
    """True once the monitor answers a command: the command line (and so
    the export's listening socket) has taken effect."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            f = s.makefile("rwb")
            f.readline()  # greeting
            f.write(b'{"execute": "qmp_capabilities"}\n')
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    return False
                if b'"QMP"' not in line:
                    return b'"return"' in line
    except OSError:
        return False


class Server:
    def __init__(self, kind, work, img):
        self.sock = os.path.join(work, f"vhost-{kind}.sock")
        qmp = os.path.join(work, f"qmp-{kind}.sock")
        for p in (self.sock, qmp):
            if os.path.exists(p):
                os.unlink(p)
        # The server's messages go to a file: shown when something fails.
        self.log = os.path.join(work, f"{kind}.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                server_cmd(kind, img, self.sock, qmp),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.time() + 20
        while not (os.path.exists(qmp) and monitor_answers(qmp)):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise SystemExit(f"{kind} did not start: {self.messages()}")
            time.sleep(0.01)

    def messages(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop(self.proc)


def bench(srv, args):
    """(value in the metric's unit, requests)"""
    cmd = [DRIVE, "bench", "--socket", srv.sock, "--seconds", str(DUR)] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=DUR * 5 + 60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stdout}{r.stderr}\n"
                           f"server said: {srv.messages()}")
    j = json.loads(r.stdout)
    return j, j["ios"]


def main():
    wanted = os.environ.get("METRICS")
    names = [m for m in METRICS if not wanted or m in wanted.split(",")]
    work = tempfile.mkdtemp(prefix="vub-bench.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    src = os.path.join(work, "src.img")
    try:
        with open("/dev/urandom", "rb") as r, open(src, "wb") as w:
            for _ in range(IMG_MIB):
                w.write(r.read(2**20))
        # results[server][metric] = list of (value, cpu us per request)
        results = {s: {m: [] for m in names} for s in SERVERS}
        print(f"# vhost-user-blk bench: reps={REPS} dur={DUR}s image={IMG_MIB} MiB on {work}; "
              f"servers {SERVERS}; front end {DRIVE}", flush=True)
        for rep in range(REPS):
            order = SERVERS[rep % len(SERVERS):] + SERVERS[:rep % len(SERVERS)]
            # Every server runs (idle but for the one measured) on its own
            # fresh copy, and each workload runs on all of them back to
            # back: what else the machine does then weighs on both alike.
            servers = {}
            try:
                for kind in order:
                    img = os.path.join(work, f"disk-{kind}.img")
                    shutil.copyfile(src, img)
                    servers[kind] = Server(kind, work, img)
                for m in names:
                    args, unit, _ = METRICS[m]
                    for kind in order:
                        srv = servers[kind]
                        before = srv.cpu()
                        j, reqs = bench(srv, args)
                        cpu = srv.cpu() - before
                        value = j["mib_s"] if unit == "MiB/s" else j["iops"]
                        per = cpu * 1e6 / reqs
                        results[kind][m].append((value, per))
                        print(f"# rep {rep + 1} {kind:5} {m:20} {value:10.1f} {unit:5} "
                              f"cpu {per:8.2f} us/req", flush=True)
            finally:
                for srv in servers.values():
                    srv.stop()
        summary(results, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(results, names):
    table(results, names, "medians of value; ratio > 1 means ours is faster", 0, 1,
          lambda m: METRICS[m][1], lambda m: METRICS[m][2])
    table(results, names, "server CPU time per request (us), medians; ratio < 1 means ours spends less",
          1, 2, lambda m: "us", lambda m: CPU_TARGETS.get(m, ""))


def table(results, names, title, field, digits, unit, target):
    benchlib.table(results, SERVERS, names, title, field, digits, unit, target,
                   name_width=20, ratio_width=10)


if __name__ == "__main__":
    sys.exit(main())
