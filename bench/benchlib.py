"""What the benchmark scripts (nbd.py, vhost_user_blk.py) share: the
qemu-storage-daemon command line of the yardstick's presets, a server's
CPU time, stopping it, and the table of medians and ratios."""

import os
import statistics
import subprocess

TICK = os.sysconf("SC_CLK_TCK")


def qemu_node_and_monitor(img, qmp):
    """The yardstick's presets (../shared/bench/peer-bench.sh), the same for
    ours and qsd: a file node with cache.direct=off under a raw node named
    "disk", and a QMP monitor on `qmp`."""
    return [
        "--blockdev", f"driver=file,node-name=file0,filename={img},cache.direct=off",
        "--blockdev", "driver=raw,node-name=disk,file=file0",
        "--chardev", f"socket,id=qmp0,path={qmp},server=on,wait=off",
        "--monitor", "chardev=qmp0",
    ]


def cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5); `rest` starts at field 3.
    return (int(rest[11]) + int(rest[12])) / TICK


def stop(proc):
    """SIGTERM, then SIGKILL if it has not gone within 10 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def table(results, servers, names, title, field, digits, unit, target=None,
          name_width=24, ratio_width=12):
    """Medians of results[server][metric][*][field] per server, and ours
    over each peer; `unit(m)` and `target(m)` label the rows."""
    peers = [s for s in servers if s != "ours"]
    head = f"{'metric':{name_width}} {'unit':6}" + "".join(f" {s:>10}" for s in servers)
    if "ours" in servers:
        head += "".join(f" {'ours/' + p:>{ratio_width}}" for p in peers)
        if target:
            head += f" {'target':>7}"
    print(f"\n# {title}")
    print(head)
    for m in names:
        med = {s: statistics.median(r[field] for r in results[s][m]) for s in servers}
        line = f"{m:{name_width}} {unit(m):6}" + "".join(f" {med[s]:10.{digits}f}" for s in servers)
        if "ours" in servers:
            line += "".join(f" {med['ours'] / med[p] if med[p] else 0:{ratio_width}.2f}" for p in peers)
            if target:
                line += f" {target(m):>7}"
        print(line)
