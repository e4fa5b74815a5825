#!/bin/busybox sh
# PID 1 of the guest of tests/vhost_user_blk_vm.rs. Loads the virtio
# modules, runs the steps the kernel command line names on /dev/vda and
# reports on the serial console in lines "VMTEST <what> key=value...",
# which the test parses. Then powers off.
#
# Command line: vmtest_steps=STEP,... (facts, wce, write, parallel,
# discard, read, resize, rowrite, hammer: run in the order given) and
# vmtest_seed=WORD (the patterns' seed).
#
# The pattern is the lines "SEED N" for N = 1, 2, ... cut to HEAD bytes
# for the head region (offset 0) and "SEED-tail N" cut to TAIL bytes for
# the last TAIL bytes of the disk; the host builds the same bytes.

/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

HEAD=1048576
TAIL=65536
PAR=2097152
RESIZE_TIMEOUT=60

say() { echo "VMTEST $*"; }
finish() {
    say "done"
    sync
    poweroff -f
}

steps=
seed=seed
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    vmtest_steps=*) steps=${arg#*=} ;;
    vmtest_seed=*) seed=${arg#*=} ;;
    esac
done

for m in $(cat /modules/order); do
    insmod "/modules/$m" || say "error insmod $m"
done

# The driver probes asynchronously: wait for the disk (5 s).
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1))
    if [ $n -gt 50 ]; then
        say "error no /dev/vda"
        dmesg | tail -20
        finish
    fi
    usleep 100000
done

# pattern WORD BYTES FILE (a line has at least 4 bytes: BYTES/4 lines do)
pattern() {
    seq 1 $(($2 / 4 + 1)) | sed "s/^/$1 /" | head -c "$2" >"$3"
}

size() { cat /sys/block/vda/size; }

# md5 of BYTES bytes at byte offset OFFSET of /dev/vda, read with O_DIRECT.
region_md5() {
    dd if=/dev/vda bs=4096 skip=$(($1 / 4096)) count=$(($2 / 4096)) iflag=direct 2>/dev/null |
        md5sum | cut -d' ' -f1
}

# writes FILE at byte offset OFFSET with O_DIRECT; prints dd's status.
write_at() {
    dd if="$1" of=/dev/vda bs=4096 seek=$(($2 / 4096)) oflag=direct conv=notrunc,fsync 2>/tmp/dd.err
    echo $?
}

# The head and tail regions: write (when $1 is write), then read back.
regions() {
    pattern "$seed" $HEAD /tmp/head
    pattern "$seed-tail" $TAIL /tmp/tail
    tail_off=$(($(size) * 512 - TAIL))
    if [ "$1" = write ]; then
        rc_head=$(write_at /tmp/head 0)
        rc_tail=$(write_at /tmp/tail $tail_off)
        say "write head_rc=$rc_head tail_rc=$rc_tail tail_offset=$tail_off"
    fi
    say "$2 head=$(region_md5 0 $HEAD) tail=$(region_md5 $tail_off $TAIL)" \
        "head_pattern=$(md5sum </tmp/head | cut -d' ' -f1)" \
        "tail_pattern=$(md5sum </tmp/tail | cut -d' ' -f1)"
}

for step in $(echo "$steps" | tr , ' '); do
    case "$step" in
    facts)
        # What the config space says, as the guest's block layer took it.
        q=/sys/block/vda/queue
        queues=
        for hctx in /sys/block/vda/mq/*; do
            queues="$queues cpus_q${hctx##*/}=$(tr -d ' ' <$hctx/cpu_list)"
        done
        say "facts size=$(size) mq=$(ls /sys/block/vda/mq | wc -l)$queues" \
            "ro=$(cat /sys/block/vda/ro) lbs=$(cat $q/logical_block_size)" \
            "pbs=$(cat $q/physical_block_size) min_io=$(cat $q/minimum_io_size)" \
            "opt_io=$(cat $q/optimal_io_size) segs=$(cat $q/max_segments)" \
            "seg_size=$(cat $q/max_segment_size) hw_kb=$(cat $q/max_hw_sectors_kb)" \
            "discard_max=$(cat $q/discard_max_hw_bytes)" \
            "discard_gran=$(cat $q/discard_granularity)" \
            "zeroes_max=$(cat $q/write_zeroes_max_bytes)" \
            "cache=$(tr ' ' _ <$q/write_cache)" \
            "serial=$(tr ' ' _ </sys/block/vda/serial)" \
            "cache_type=$(tr ' ' _ </sys/block/vda/cache_type)"
        ;;
    wce)
        # virtio_blk writes the config space's WCE byte; QEMU passes it
        # on (SET_CONFIG) and keeps it only when the backend took it.
        for mode in "write back" "write through"; do
            echo "$mode" >/sys/block/vda/cache_type 2>/tmp/wce.err
            rc=$?
            say "wce set=$(echo $mode | tr ' ' _) rc=$rc" \
                "cache_type=$(tr ' ' _ </sys/block/vda/cache_type)" \
                "err=$(tr ' ' _ </tmp/wce.err)"
        done
        ;;
    write) regions write readback ;;
    read) regions read read ;;
    resize)
        old=$(size)
        say "waiting-resize size=$old"
        n=0
        while [ "$(size)" = "$old" ] && [ $n -lt $((RESIZE_TIMEOUT * 10)) ]; do
            usleep 100000
            n=$((n + 1))
        done
        if [ "$(size)" = "$old" ]; then
            say "error resize timeout size=$old"
        else
            say "resized size=$(size)"
        fi
        ;;
    rowrite)
        pattern "$seed-ro" 4096 /tmp/ro
        rc=$(write_at /tmp/ro 0)
        say "rowrite rc=$rc err=$(head -1 /tmp/dd.err | tr ' ' _)"
        ;;
    parallel)
        # One writer per CPU at once (so on every queue when there is one
        # per CPU), each PAR bytes after the head region, then read back.
        cpus=$(nproc)
        pids=
        c=0
        while [ $c -lt "$cpus" ]; do
            pattern "$seed-cpu$c" $PAR /tmp/par$c
            taskset $((1 << c)) dd if=/tmp/par$c of=/dev/vda bs=65536 \
                seek=$(((HEAD + c * PAR) / 65536)) oflag=direct 2>/dev/null &
            pids="$pids $!"
            c=$((c + 1))
        done
        rc=0
        for pid in $pids; do wait "$pid" || rc=1; done
        c=0
        while [ $c -lt "$cpus" ]; do
            say "parallel cpu=$c rc=$rc region=$(region_md5 $((HEAD + c * PAR)) $PAR)" \
                "pattern=$(md5sum </tmp/par$c | cut -d' ' -f1)"
            c=$((c + 1))
        done
        ;;
    discard)
        # Discards the second quarter of the head region, then reads the
        # head region back.
        blkdiscard -o $((HEAD / 4)) -l $((HEAD / 4)) /dev/vda 2>/tmp/discard.err
        rc=$?
        say "discard rc=$rc head=$(region_md5 0 $HEAD) err=$(tr ' ' _ </tmp/discard.err)"
        ;;
    hammer)
        # Writes 64 KiB blocks over the head region until the host kills
        # the VM; says so once a few are done, so that I/O is in flight.
        pattern "$seed-hammer" 65536 /tmp/hammer
        i=0
        while :; do
            dd if=/tmp/hammer of=/dev/vda bs=4096 seek=$((i % 16 * 16)) oflag=direct 2>/dev/null
            i=$((i + 1))
            [ $i = 8 ] && say "hammering"
        done
        ;;
    *) say "error unknown step $step" ;;
    esac
done
finish
