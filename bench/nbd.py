#!/usr/bin/env python3
"""NBD data-path benchmark: our storage-daemon against qemu-storage-daemon
and nbdkit (file plugin), alternating in one run.

Each repetition starts every server in turn (the order rotates between
repetitions) on a fresh copy of the same random image on /dev/shm, runs
every metric against it over TCP on 127.0.0.1, and reads the server's CPU
time (utime+stime of /proc/PID/stat, all threads) around each metric. The
summary prints per metric the median of the runs, our ratio to each peer,
and the server CPU time per request (per MiB for the nbdcopy copies).

Run through bench/nbd.sh, which builds the release binary and checks the
tools. Environment: REPS (3), DUR (seconds per metric, 3), IMG_SIZE (MiB,
1024), SERVERS (ours,qsd,nbdkit), METRICS (comma list, default all),
OURS (path of our binary).
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

REPS = int(os.environ.get("REPS", "3"))
DUR = float(os.environ.get("DUR", "3"))
IMG_MIB = int(os.environ.get("IMG_SIZE", "1024"))
OURS = os.environ.get("OURS", "target/release/storage-daemon")
SERVERS = os.environ.get("SERVERS", "ours,qsd,nbdkit").split(",")
EXPORT = "disk"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(kind, img, port, qmp):
    # The yardstick's presets (../shared/bench/peer-bench.sh), same for
    # ours and qsd: file node with cache.direct=off under a raw node.
    qemu_like = qemu_node_and_monitor(img, qmp) + [
        "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
        "--export", f"type=nbd,id=exp0,node-name=disk,name={EXPORT},writable=on",
    ]
    if kind == "ours":
        return [OURS] + qemu_like
    if kind == "qsd":
        return ["qemu-storage-daemon"] + qemu_like
    if kind == "nbdkit":
        return ["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "-e", EXPORT, "file", img]
    raise SystemExit(f"unknown server {kind}")


class Server:
    def __init__(self, kind, work, img):
        self.port = free_port()
        qmp = os.path.join(work, f"qmp-{kind}.sock")
        self.uri = f"nbd://127.0.0.1:{self.port}/{EXPORT}"
        self.proc = subprocess.Popen(
            server_cmd(kind, img, self.port, qmp),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise SystemExit(f"{kind} did not start: {err}")
                time.sleep(0.01)

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop(self.proc)


def run(cmd, timeout):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def qimg(srv, count, depth, bs, step, write, mib=False):
    """(IOPS or MiB/s, requests, None)"""
    cmd = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-c", str(count), "-d", str(depth),
           "-s", str(bs), "-S", str(step)]
    if write:
        cmd += ["-w", "--pattern=165"]
    r = run(cmd + [srv.uri], DUR * 10 + 60)
    for line in r.stdout.splitlines():
        if line.startswith("Run completed in "):
            secs = float(line.split()[3])
            value = count * bs / secs / 2**20 if mib else count / secs
            return value, count, None
    raise RuntimeError(f"qemu-img bench failed: {r.stdout}{r.stderr}")


def fio(srv, rw, depth):
    cmd = ["fio", "--name=nbd", "--ioengine=nbd", f"--uri={srv.uri}", f"--size={IMG_MIB}M",
           "--bs=4k", f"--rw={rw}", f"--iodepth={depth}", "--numjobs=1", "--time_based",
           f"--runtime={DUR}", "--group_reporting", "--output-format=json"]
    r = run(cmd, DUR * 10 + 60)
    try:
        job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]
    except (ValueError, KeyError, IndexError):
        raise RuntimeError(f"fio failed: {r.stdout}{r.stderr}")
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    iops = job["read"]["iops"] + job["write"]["iops"]
    return iops, ios, None


def nbdcopy(srv, src, to_server):
    args = ["nbdcopy", "--flush", src, srv.uri] if to_server else ["nbdcopy", srv.uri, "null:"]
    t = time.perf_counter()
    r = run(args, 300)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"nbdcopy failed: {r.stderr}")
    return IMG_MIB / secs, None, IMG_MIB


STEP = 1024 * 1024 + 4096  # the yardstick's 4k stride, modulo the size
# name -> (unit, function(srv, src) -> (value, requests, mib))
METRICS = {
    "qimg.read4k.qd1": ("IOPS", lambda s, _: qimg(s, int(30000 * DUR), 1, 4096, STEP, False)),
    "qimg.read4k.qd16": ("IOPS", lambda s, _: qimg(s, int(70000 * DUR), 16, 4096, STEP, False)),
    "qimg.write4k.qd1": ("IOPS", lambda s, _: qimg(s, int(30000 * DUR), 1, 4096, STEP, True)),
    "qimg.write4k.qd16": ("IOPS", lambda s, _: qimg(s, int(70000 * DUR), 16, 4096, STEP, True)),
    "qimg.read64k_seq.qd16": ("MiB/s", lambda s, _: qimg(s, int(25000 * DUR), 16, 65536, 65536, False, mib=True)),
    "fio.randread4k.qd1": ("IOPS", lambda s, _: fio(s, "randread", 1)),
    "fio.randread4k.qd32": ("IOPS", lambda s, _: fio(s, "randread", 32)),
    "fio.randwrite4k.qd1": ("IOPS", lambda s, _: fio(s, "randwrite", 1)),
    "fio.randwrite4k.qd32": ("IOPS", lambda s, _: fio(s, "randwrite", 32)),
    "nbdcopy.read_to_null": ("MiB/s", lambda s, src: nbdcopy(s, src, False)),
    "nbdcopy.write_from_file": ("MiB/s", lambda s, src: nbdcopy(s, src, True)),
}


def main():
    wanted = os.environ.get("METRICS")
    names = [m for m in METRICS if not wanted or m in wanted.split(",")]
    work = tempfile.mkdtemp(prefix="nbd-bench.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    src = os.path.join(work, "src.img")
    img = os.path.join(work, "disk.img")
    try:
        with open("/dev/urandom", "rb") as r, open(src, "wb") as w:
            for _ in range(IMG_MIB):
                w.write(r.read(2**20))
        # results[server][metric] = list of (value, cpu per request or MiB)
        results = {s: {m: [] for m in names} for s in SERVERS}
        print(f"# nbd bench: reps={REPS} dur={DUR}s image={IMG_MIB} MiB on {work}; servers {SERVERS}",
              flush=True)
        for rep in range(REPS):
            order = SERVERS[rep % len(SERVERS):] + SERVERS[:rep % len(SERVERS)]
            for kind in order:
                shutil.copyfile(src, img)
                srv = Server(kind, work, img)
                try:
                    for m in names:
                        before = srv.cpu()
                        value, reqs, mib = METRICS[m][1](srv, src)
                        cpu = srv.cpu() - before
                        per = cpu * 1e6 / reqs if reqs else cpu * 1e6 / mib
                        results[kind][m].append((value, per))
                        print(f"# rep {rep + 1} {kind:6} {m:24} {value:10.1f} {METRICS[m][0]:5} "
                              f"cpu {per:8.2f} us/{'req' if reqs else 'MiB'}", flush=True)
                finally:
                    srv.stop()
        summary(results, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(results, names):
    table(results, names, "medians of value; ratio > 1 means ours is faster", 0, 1,
          lambda m: METRICS[m][0])
    table(results, names, "server CPU time per request (us; per MiB for nbdcopy), medians; "
          "ratio < 1 means ours spends less", 1, 2, lambda m: "us")


def table(results, names, title, field, digits, unit):
    benchlib.table(results, SERVERS, names, title, field, digits, unit)


if __name__ == "__main__":
    sys.exit(main())
