# Protocol edges through libnbd (what `nbdsh -c` runs), one line per
# case: "case: ok", "case: EINVAL" (the errno the server or libnbd
# gave), or a value. The Rust tests check the lines and compare them
# between qemu-storage-daemon and ours.
# usage: edges.py URI rw|ro
import errno
import sys

import nbd

uri, mode = sys.argv[1], sys.argv[2]
MAX = 32 << 20


def res(f):
    try:
        v = f()
        return "ok" if v is None or isinstance(v, (bytes, bytearray)) else str(v)
    except nbd.Error as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def case(name, f):
    print("%s: %s" % (name, res(f)), flush=True)


def connect(contexts=True):
    h = nbd.NBD()
    if contexts:
        h.add_meta_context("base:allocation")
        h.add_meta_context("qemu:allocation-depth")
    h.connect_uri(uri)
    return h


h = connect()
size = h.get_size()
print("size: %d" % size)
print("structured: %s" % h.get_structured_replies_negotiated())
for ctx in ("base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:x"):
    print("context %s: %s" % (ctx, h.can_meta_context(ctx)))

if mode == "ro":
    # libnbd refuses by itself first (strict mode)...
    case("strict pwrite", lambda: h.pwrite(b"x" * 512, 0))
    case("strict trim", lambda: h.trim(512, 0))
    case("strict zero", lambda: h.zero(512, 0))
    # ...then what the server answers.
    h.set_strict_mode(0)
    case("pwrite", lambda: h.pwrite(b"x" * 512, 0))
    case("pwrite fua", lambda: h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA))
    case("trim", lambda: h.trim(512, 0))
    case("zero", lambda: h.zero(512, 0))
    case("flush", lambda: h.flush())
    case("cache", lambda: h.cache(512, 0))
    case("pread", lambda: h.pread(512, 0))
    h.shutdown()
    sys.exit(0)

# Writes and reads right at the end of the image.
tail = bytes(range(256)) * 2
case("pwrite end", lambda: h.pwrite(tail, size - 512))
print("pread end equal: %s" % (h.pread(512, size - 512) == tail))
case("pwrite unaligned end", lambda: h.pwrite(b"\x5a" * 77, size - 77))
print("pread unaligned end: %s" % (h.pread(77, size - 77) == b"\x5a" * 77))

# Out of range: libnbd's own check (strict mode) and the server's.
case("strict pread past end", lambda: h.pread(512, size - 256))
case("strict pwrite past end", lambda: h.pwrite(b"x" * 512, size - 256))
h.set_strict_mode(0)
case("pread past end", lambda: h.pread(512, size - 256))
case("pread at end", lambda: h.pread(512, size))
case("pread far", lambda: h.pread(512, 1 << 62))
case("pwrite past end", lambda: h.pwrite(b"x" * 512, size - 256))
case("zero past end", lambda: h.zero(1024, size - 512))
case("trim past end", lambda: h.trim(1024, size - 512))
case("cache past end", lambda: h.cache(1024, size - 512))
case("block_status past end", lambda: h.block_status(1024, size, lambda *a: 0))
case("pread empty", lambda: h.pread(0, 0))
case("pread max", lambda: h.pread(MAX, 0))
case("pread max+1", lambda: h.pread(MAX + 1, 0))
case("pread unknown flag", lambda: h.pread(512, 0, 1 << 9))
case("pwrite df flag", lambda: h.pwrite(b"x", 0, nbd.CMD_FLAG_DF))
h.set_strict_mode(nbd.STRICT_COMMANDS | nbd.STRICT_FLAGS | nbd.STRICT_BOUNDS)

# Zeroes, trim, cache, flush.
h.pwrite(b"\x11" * 65536, 0)
case("zero fast", lambda: h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO))
print("zeroed: %s" % (h.pread(65536, 0) == bytes(65536)))
h.pwrite(b"\x11" * 65536, 0)
case("zero fast no_hole", lambda: h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE))
case("zero no_hole fua", lambda: h.zero(4096, 65536, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA))
case("zero unaligned", lambda: h.zero(1000, 3))
print("zeroed: %s" % (h.pread(65536, 0) == bytes(65536)))
h.pwrite(b"\x22" * 65536, 1 << 20)
case("trim", lambda: h.trim(65536, 1 << 20))
case("trim fua", lambda: h.trim(4096, 2 << 20, nbd.CMD_FLAG_FUA))
case("cache", lambda: h.cache(1 << 20, 0))
case("flush", lambda: h.flush())
case("pwrite fua", lambda: h.pwrite(b"\x33" * 4096, 4 << 20, nbd.CMD_FLAG_FUA))

# Block status: REQ_ONE gives one extent per context, no more than asked.
h.zero(size, 0) if size <= MAX else None
h.pwrite(b"\x44" * 65536, 0)
seen = {}


def extents(ctx, off, ents, err):
    seen.setdefault(ctx, []).append(list(ents))
    return 0


case("block_status", lambda: h.block_status(1 << 20, 0, extents))
for ctx in sorted(seen):
    print("extents %s: %s" % (ctx, seen[ctx][0][:4]))
seen.clear()
case("block_status req_one", lambda: h.block_status(1 << 20, 4096, extents, nbd.CMD_FLAG_REQ_ONE))
for ctx in sorted(seen):
    print("req_one %s: %s" % (ctx, seen[ctx]))

# DF: the read comes back in one piece.
chunks = []


def chunk(buf, off, status, err):
    chunks.append((off, len(buf), status))
    return 0


case("pread_structured df", lambda: h.pread_structured(65536, 0, chunk, nbd.CMD_FLAG_DF))
print("df chunks: %s" % chunks)

# Many requests in flight; completions may come in any order.
N = 64
order = []
bufs = []
for i in range(N):
    h.aio_pwrite(bytes([i]) * 4096, (8 << 20) + i * 4096,
                 completion=lambda err, i=i: order.append(i) or 0)
while len(order) < N:
    h.poll(-1)
case("aio flush", lambda: h.flush())
order.clear()
for i in range(N):
    b = nbd.Buffer(4096)
    bufs.append(b)
    h.aio_pread(b, (8 << 20) + i * 4096, completion=lambda err, i=i: order.append(i) or 0)
print("in flight: %d" % h.aio_in_flight())
while len(order) < N:
    h.poll(-1)
print("aio completed: %d" % len(set(order)))
print("aio data ok: %s" % all(bytes(bufs[i].to_bytearray()) == bytes([i]) * 4096 for i in range(N)))
h.shutdown()

# Without a negotiated context the server refuses BLOCK_STATUS.
h = connect(contexts=False)
h.set_strict_mode(0)
case("block_status no context", lambda: h.block_status(4096, 0, lambda *a: 0))
# A write larger than the maximum block: the server cannot skip the
# payload and drops the connection.
# Which error libnbd reports depends on when it notices (ENOTCONN or a
# reply it cannot match), so only "failed" is printed.
print("pwrite max+1: %s" % ("ok" if res(lambda: h.pwrite(bytes(MAX + 1), 0)) == "ok" else "failed"))
case("after pwrite max+1", lambda: h.pread(512, 0))
