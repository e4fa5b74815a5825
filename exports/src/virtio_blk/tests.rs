//! The engine over real guest memory and a real split virtqueue
//! ([`Driver`]), against a RAM disk that records what it was asked
//! ([`MemDisk`]) and against real `file` and `null-co` nodes.
//!
//! The expected statuses and used lengths were recorded from
//! qemu-storage-daemon 10.0.2's vhost-user-blk export, driven with the
//! same chains by a small vhost-user front end (1 MiB image).

use std::sync::Arc;

use storage_block::{
    BlockDevice, BlockGraph, BlockdevOptions, DriverOptions, FileOptions, NullOptions,
};
use virtio_bindings::virtio_blk::*;
use virtio_queue::desc::split::Descriptor;

use super::fuzz::{DATA, Desc, Driver, MemDisk};
use super::*;

const MIB: usize = 1 << 20;
/// Buffers of the requests the tests build.
const HDR: u64 = DATA;
const STATUS: u64 = DATA + 0x100;
const BUF: u64 = 0x10000;

fn opts(lbs: u32, writable: bool) -> BlkOptions {
    BlkOptions {
        logical_block_size: lbs,
        num_queues: 1,
        writable,
        writethrough: false,
    }
}

fn header(req_type: u32, sector: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&req_type.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

fn range(sector: u64, num: u32, flags: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(16);
    r.extend_from_slice(&sector.to_le_bytes());
    r.extend_from_slice(&num.to_le_bytes());
    r.extend_from_slice(&flags.to_le_bytes());
    r
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A device and a driver with 8 MiB of guest memory.
struct Rig {
    driver: Driver,
    engine: Engine,
    rt: tokio::runtime::Runtime,
}

impl Rig {
    fn new(dev: Arc<dyn BlockDevice>, o: &BlkOptions) -> Rig {
        Rig {
            driver: Driver::new(&[(0, 8 * MIB)], 128).expect("driver"),
            engine: Engine::new(dev, o),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    }

    /// Serves the next available chain and puts it on the used ring;
    /// returns what the engine said and what the driver sees.
    fn serve(&mut self) -> Result<u32, ChainError> {
        let chain = self.driver.pop().expect("a chain is available");
        let head = chain.head_index();
        let r = self.rt.block_on(self.engine.process_chain(chain));
        let used = *r.as_ref().unwrap_or(&0);
        self.driver.add_used(head, used).expect("add used");
        r
    }

    /// Submits `descs` as one chain and serves it.
    fn submit(&mut self, descs: &[Desc]) -> Result<u32, ChainError> {
        self.driver.add_chain(descs).expect("add chain");
        self.serve()
    }

    fn status(&self) -> u8 {
        self.driver.read(STATUS, 1).expect("status")[0]
    }

    /// A request with a 16-byte header, `out` device-readable data bytes,
    /// `in_len` device-writable data bytes and a separate status byte;
    /// returns (used length, status).
    fn request(&mut self, req_type: u32, sector: u64, out: &[u8], in_len: u32) -> (u32, u8) {
        self.driver
            .write(HDR, &header(req_type, sector))
            .expect("header");
        self.driver.write(STATUS, &[0xee]).expect("status");
        self.driver
            .write(BUF, &vec![0xcc; in_len as usize])
            .expect("fill");
        let mut descs = vec![Desc::r(HDR, 16)];
        if !out.is_empty() {
            let at = BUF + 4 * MIB as u64;
            self.driver.write(at, out).expect("out data");
            descs.push(Desc::r(at, out.len() as u32));
        }
        if in_len > 0 {
            descs.push(Desc::w(BUF, in_len));
        }
        descs.push(Desc::w(STATUS, 1));
        let used = self.submit(&descs).expect("a well-formed chain");
        (used, self.status())
    }
}

fn patterned_disk(size: usize) -> Arc<MemDisk> {
    let d = MemDisk::new(size);
    d.state().data = pattern(size);
    d
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

// -- config space and features -------------------------------------------

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// GET_CONFIG of qsd 10.0.2 for a 1 MiB image: the 96 bytes after the
/// reply's offset, size and flags.
const QSD_CONFIG_512: &str = "0008000000000000000000007e0000000000000000020000000001000100000000000100008000000100000001000000008000000100000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const QSD_CONFIG_4096_3Q: &str = "0008000000000000000000007e0000000000000000100000000001000100000000000300008000000100000008000000008000000100000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn config_space_is_qsds() {
    let strip = |s: &str| {
        let b = hex(s);
        assert_eq!(b.len(), config::CONFIG_LEN);
        b
    };
    let c = BlkConfig::new(&opts(512, true), MIB as u64);
    assert_eq!(c.bytes(), strip(QSD_CONFIG_512));
    // Read-only and writethrough change nothing in the config space.
    let mut o = opts(512, false);
    o.writethrough = true;
    assert_eq!(
        BlkConfig::new(&o, MIB as u64).bytes(),
        strip(QSD_CONFIG_512)
    );
    let mut o = opts(4096, false);
    o.num_queues = 3;
    assert_eq!(
        BlkConfig::new(&o, MIB as u64).bytes(),
        strip(QSD_CONFIG_4096_3Q)
    );
}

#[test]
fn features_are_qsds() {
    // qsd's GET_FEATURES adds libvhost-user's transport bits:
    // NOTIFY_ON_EMPTY (24), LOG_ALL (26), PROTOCOL_FEATURES (30).
    let transport = 1 << 24 | 1 << 26 | 1 << 30;
    assert_eq!(device_features(&opts(512, true)) | transport, 0x1_7500_7e46);
    assert_eq!(
        device_features(&opts(4096, false)) | transport,
        0x1_7500_7e66
    );
}

#[test]
fn config_reads_writes_and_capacity() {
    let mut c = BlkConfig::new(&opts(4096, true), 10 * 512 + 100);
    assert_eq!(c.read(0, 8).expect("capacity"), 10u64.to_le_bytes());
    c.set_capacity(3 * MIB as u64);
    assert_eq!(c.read(0, 8).expect("capacity"), 6144u64.to_le_bytes());
    assert_eq!(c.read(20, 4).expect("blk_size"), 4096u32.to_le_bytes());
    assert_eq!(c.read(90, 6).expect("tail").len(), 6);
    assert_eq!(
        c.read(90, 7),
        Err(ConfigError::OutOfRange { offset: 90, len: 7 })
    );
    assert_eq!(
        c.read(u32::MAX, 2),
        Err(ConfigError::OutOfRange {
            offset: u32::MAX,
            len: 2
        })
    );
    assert!(!c.writeback());
    c.write(32, &[1]).expect("wce");
    assert!(c.writeback());
    assert_eq!(c.read(32, 1).expect("wce"), [1]);
    c.write(32, &[0]).expect("wce");
    assert!(!c.writeback());
    // qsd takes exactly the one wce byte.
    assert_eq!(
        c.write(32, &[1, 0]),
        Err(ConfigError::ReadOnly { offset: 32, len: 2 })
    );
    assert_eq!(
        c.write(0, &[1]),
        Err(ConfigError::ReadOnly { offset: 0, len: 1 })
    );
    assert_eq!(
        c.write(96, &[1]),
        Err(ConfigError::OutOfRange { offset: 96, len: 1 })
    );
    assert!(!c.writeback());
}

// -- requests, as qsd answers them ---------------------------------------

#[test]
fn reads_writes_and_flush_as_qsd() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    let reads: &[(u32, u64, u32, u32, u8)] = &[
        (VIRTIO_BLK_T_IN, 0, 4096, 4097, OK),
        (VIRTIO_BLK_T_IN, 1, 4096, 4097, OK),
        (VIRTIO_BLK_T_IN, 0, 100, 101, IOERR),
        (VIRTIO_BLK_T_IN, 0, 0, 1, OK),
        (VIRTIO_BLK_T_IN, 2048, 0, 1, OK),
        (VIRTIO_BLK_T_IN, 2056, 0, 1, IOERR),
        (VIRTIO_BLK_T_IN, 2040, 4096, 4097, OK),
        (VIRTIO_BLK_T_IN, 2048, 4096, 4097, IOERR),
        (VIRTIO_BLK_T_IN, u64::MAX, 512, 513, IOERR),
        (VIRTIO_BLK_T_IN | VIRTIO_BLK_T_BARRIER, 0, 512, 513, OK),
        (VIRTIO_BLK_T_FLUSH, 0, 0, 1, OK),
        (VIRTIO_BLK_T_FLUSH | VIRTIO_BLK_T_BARRIER, 0, 0, 1, OK),
    ];
    for &(t, sector, in_len, used, status) in reads {
        let got = rig.request(t, sector, &[], in_len);
        assert_eq!(
            got,
            (used, status),
            "type {t:#x} sector {sector} len {in_len}"
        );
        let data = rig.driver.read(BUF, in_len as usize).expect("data");
        if status == OK && in_len > 0 {
            let at = (sector * 512) as usize;
            assert_eq!(data, pattern(MIB)[at..at + in_len as usize]);
        } else {
            assert!(data.iter().all(|&b| b == 0xcc), "failed read wrote data");
        }
    }
    assert_eq!(disk.state().flushes, 2);

    let writes: &[(u64, usize, u32, u32, u8)] = &[
        (8, 4096, 0, 1, OK),
        (8, 100, 0, 1, IOERR),
        (24, 512, 0, 1, OK),
        (2048, 4096, 0, 1, IOERR),
        (32, 4096, 64, 65, OK),
    ];
    for &(sector, len, in_len, used, status) in writes {
        let before = disk.state().data.clone();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + sector as usize) as u8).collect();
        let got = rig.request(VIRTIO_BLK_T_OUT, sector, &data, in_len);
        assert_eq!(got, (used, status), "write sector {sector} len {len}");
        let mut expect = before;
        if status == OK {
            let at = sector as usize * 512;
            expect[at..at + len].copy_from_slice(&data);
        }
        assert!(
            disk.state().data == expect,
            "disk content after write at {sector}"
        );
    }
    // Writeback by default: no FUA.
    assert!(disk.state().writes_fua.iter().all(|&f| !f));
}

#[test]
fn block_size_4096_checks_the_start_only() {
    let mut rig = Rig::new(patterned_disk(MIB), &opts(4096, true));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 4096), (4097, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 1, &[], 4096), (4097, IOERR));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 8, &[], 512), (513, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 8, &[], 1024), (1025, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 8, &[1; 512], 0), (1, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 9, &[1; 4096], 0), (1, IOERR));
    for t in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        assert_eq!(rig.request(t, 0, &range(16, 8, 0), 0), (1, OK));
        assert_eq!(rig.request(t, 0, &range(1, 8, 0), 0), (1, IOERR));
        assert_eq!(rig.request(t, 0, &range(8, 1, 0), 0), (1, OK));
        assert_eq!(rig.request(t, 0, &range(16, 8, 2), 0), (1, UNSUPP));
    }
}

#[test]
fn get_id_and_unknown_types_as_qsd() {
    let mut rig = Rig::new(patterned_disk(MIB), &opts(512, true));
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &[], 512), (513, OK));
    let id = rig.driver.read(BUF, 24).expect("id");
    assert_eq!(&id[..15], b"vhost_user_blk\0");
    assert!(id[15..].iter().all(|&b| b == 0xcc), "wrote past the id");
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &[], 10), (11, OK));
    assert_eq!(rig.driver.read(BUF, 10).expect("id"), b"vhost_user");
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &[], 0), (1, OK));

    // GET_LIFETIME (10), SCSI (2), 3, 5, SECURE_ERASE (14): unsupported,
    // with the whole writable length used.
    assert_eq!(rig.request(10, 0, &[], 64), (65, UNSUPP));
    assert!(
        rig.driver
            .read(BUF, 64)
            .expect("buf")
            .iter()
            .all(|&b| b == 0xcc)
    );
    for t in [2, 3, 5] {
        assert_eq!(rig.request(t, 0, &[], 0), (1, UNSUPP), "type {t}");
    }
    assert_eq!(
        rig.request(VIRTIO_BLK_T_SECURE_ERASE, 0, &range(0, 8, 0), 0),
        (1, UNSUPP)
    );

    // A VDUSE export sets its own serial, cut to 20 bytes.
    rig.engine.set_serial("0123456789abcdefghijKLMN");
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &[], 64), (65, OK));
    let id = rig.driver.read(BUF, 21).expect("id");
    assert_eq!(&id[..20], b"0123456789abcdefghij");
    assert_eq!(id[20], 0xcc);
}

#[test]
fn discard_and_write_zeroes_as_qsd() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    let mut two = range(16, 8, 0);
    two.extend(range(16, 8, 0));
    let mut seventeen = range(16, 8, 0);
    seventeen.push(0);
    for t in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        let wz = t == VIRTIO_BLK_T_WRITE_ZEROES;
        let cases: &[(&[u8], u8)] = &[
            (&range(16, 8, 0), OK),
            (&range(32, 8, 1), if wz { OK } else { UNSUPP }),
            (&range(16, 8, 2), UNSUPP),
            (&two, UNSUPP),
            (&range(16, 8, 0)[..8], IOERR),
            (&seventeen, UNSUPP),
            (&range(0, 32769, 0), IOERR),
            (&range(1, 8, 0), OK),
            (&range(2040, 16, 0), IOERR),
            (&range(2040, 16, 2), IOERR),
            (&range(2040, 16, 1), IOERR),
            (&range(0, 0, 0), OK),
        ];
        for (i, &(body, status)) in cases.iter().enumerate() {
            assert_eq!(rig.request(t, 0, body, 0), (1, status), "type {t} case {i}");
        }
        // A range-less request: the header alone.
        rig.driver.write(HDR, &header(t, 0)).expect("header");
        assert_eq!(rig.submit(&[Desc::r(HDR, 16), Desc::w(STATUS, 1)]), Ok(1));
        assert_eq!(rig.status(), IOERR);
    }
    let s = disk.state();
    assert_eq!(s.discards, [(16 * 512, 8 * 512), (512, 8 * 512), (0, 0)]);
    assert_eq!(
        s.write_zeroes,
        [
            (16 * 512, 8 * 512, false),
            (32 * 512, 8 * 512, true),
            (512, 8 * 512, false),
            (0, 0, false)
        ]
    );
    // Discard is a hint (the disk keeps the data); write-zeroes zeroes.
    assert!(s.data[512..9 * 512].iter().all(|&b| b == 0));
    assert_eq!(s.data[9 * 512..16 * 512], pattern(MIB)[9 * 512..16 * 512]);
    assert!(s.data[16 * 512..24 * 512].iter().all(|&b| b == 0));
    assert!(s.data[32 * 512..40 * 512].iter().all(|&b| b == 0));
    assert_eq!(s.data[40 * 512..], pattern(MIB)[40 * 512..]);
}

#[test]
fn discard_limit_is_32768_sectors() {
    let disk = MemDisk::new(64 * MIB);
    let mut rig = Rig::new(disk, &opts(512, true));
    for t in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        assert_eq!(rig.request(t, 0, &range(0, 32768, 0), 0), (1, OK));
        assert_eq!(rig.request(t, 0, &range(0, 32769, 0), 0), (1, IOERR));
    }
}

#[test]
fn read_only_export_refuses_writes_with_ioerr() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, false));
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 8, &[1; 4096], 0), (1, IOERR));
    assert_eq!(
        rig.request(VIRTIO_BLK_T_OUT, 8, &[1; 4096], 64),
        (65, IOERR)
    );
    for t in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        for body in [
            range(16, 8, 0),
            range(16, 8, 2),
            range(16, 8, 1),
            Vec::new(),
        ] {
            assert_eq!(rig.request(t, 0, &body, 0), (1, IOERR));
        }
    }
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0), (1, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 512), (513, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_GET_ID, 0, &[], 20), (21, OK));
    let s = disk.state();
    assert!(s.data == pattern(MIB));
    assert!(s.writes_fua.is_empty() && s.discards.is_empty() && s.write_zeroes.is_empty());
}

#[test]
fn io_errors_give_ioerr() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    disk.state().fail = true;
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 4096), (4097, IOERR));
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0), (1, IOERR));
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0), (1, IOERR));
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &range(0, 8, 0), 0),
        (1, IOERR)
    );
    assert_eq!(
        rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &range(0, 8, 0), 0),
        (1, IOERR)
    );
    // The failure is per request: the device goes on once the node does.
    disk.state().fail = false;
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 4096), (4097, OK));
}

#[test]
fn writethrough_and_wce_decide_fua() {
    let disk = MemDisk::new(MIB);
    let mut o = opts(512, true);
    o.writethrough = true;
    let mut rig = Rig::new(disk.clone(), &o);
    assert!(!rig.engine.writeback());
    rig.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0);
    rig.engine.set_writeback(true);
    rig.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0);
    rig.engine.set_writeback(false);
    rig.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0);
    assert_eq!(disk.state().writes_fua, [true, false, true]);
}

#[test]
fn capacity_follows_the_node() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 2048, &[], 512), (513, IOERR));
    rig.rt
        .block_on(disk.resize(2 * MIB as u64))
        .expect("resize");
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 2048, &[], 512), (513, OK));
}

// -- chain shapes ----------------------------------------------------------

#[test]
fn header_and_data_split_across_descriptors() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    // A write whose header spans three descriptors (5 + 9 + 2+data) and
    // whose data spans five, one of them empty.
    let data = pattern(8192 + 512)[512..].to_vec();
    let mut out = header(VIRTIO_BLK_T_OUT, 16);
    out.extend_from_slice(&data);
    rig.driver.write(BUF, &out).expect("out");
    let b = BUF;
    let chain = [
        Desc::r(b, 5),
        Desc::r(b + 5, 9),
        Desc::r(b + 14, 2 + 1000),
        Desc::r(b + 1016, 0),
        Desc::r(b + 1016, 3000),
        Desc::r(b + 4016, 4192),
        Desc::w(STATUS, 1),
    ];
    rig.driver.write(STATUS, &[0xee]).expect("status");
    assert_eq!(rig.submit(&chain), Ok(1));
    assert_eq!(rig.status(), OK);
    assert_eq!(disk.state().data[16 * 512..16 * 512 + 8192], data[..]);

    // A read into three descriptors, the status byte the last byte of the
    // last one.
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 16))
        .expect("header");
    let r = 0x200000;
    let chain = [
        Desc::r(HDR, 16),
        Desc::w(r, 1000),
        Desc::w(r + 5000, 3096),
        Desc::w(r + 10000, 4096 + 1),
    ];
    assert_eq!(rig.submit(&chain), Ok(8193));
    let mut got = rig.driver.read(r, 1000).expect("a");
    got.extend(rig.driver.read(r + 5000, 3096).expect("b"));
    got.extend(rig.driver.read(r + 10000, 4096).expect("c"));
    assert_eq!(got, data[..8192]);
    assert_eq!(rig.driver.read(r + 10000 + 4096, 1).expect("status"), [OK]);

    // Extra device-readable bytes after an IN header are ignored.
    let mut h = header(VIRTIO_BLK_T_IN, 0);
    h.extend_from_slice(&[0xff; 16]);
    rig.driver.write(HDR, &h).expect("header");
    assert_eq!(
        rig.submit(&[Desc::r(HDR, 32), Desc::w(BUF, 512), Desc::w(STATUS, 1)]),
        Ok(513)
    );
    assert_eq!(rig.status(), OK);
}

/// Descriptors in the "wrong" direction for the request are not data
/// (qsd: the same statuses and used lengths).
#[test]
fn data_in_the_other_direction_is_ignored() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    rig.driver.write(BUF, &[0xcc; 512]).expect("buf");
    assert_eq!(
        rig.submit(&[Desc::r(HDR, 16), Desc::r(BUF, 512), Desc::w(STATUS, 1)]),
        Ok(1)
    );
    assert_eq!(rig.status(), OK);
    assert_eq!(rig.driver.read(BUF, 512).expect("buf"), [0xcc; 512]);

    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_OUT, 0))
        .expect("header");
    assert_eq!(
        rig.submit(&[Desc::r(HDR, 16), Desc::w(BUF, 512), Desc::w(STATUS, 1)]),
        Ok(513)
    );
    assert_eq!(rig.status(), OK);
    assert!(disk.state().data == pattern(MIB), "a write of nothing");

    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_FLUSH, 0))
        .expect("header");
    let chain = [
        Desc::r(HDR, 16),
        Desc::r(BUF, 512),
        Desc::w(BUF + 1024, 512),
        Desc::w(STATUS, 1),
    ];
    assert_eq!(rig.submit(&chain), Ok(513));
    assert_eq!(rig.status(), OK);

    // The status is the last byte of a 4-byte descriptor: the three
    // before it are data, 515 bytes in all, not whole sectors.
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    rig.driver.write(STATUS, &[0xee; 4]).expect("status");
    assert_eq!(
        rig.submit(&[Desc::r(HDR, 16), Desc::w(BUF, 512), Desc::w(STATUS, 4)]),
        Ok(516)
    );
    assert_eq!(
        rig.driver.read(STATUS, 4).expect("status"),
        [0xee, 0xee, 0xee, IOERR]
    );
}

#[test]
fn large_requests_go_through_in_pieces() {
    // 3 MiB + 512: more than one CHUNK, not a multiple of it.
    let len = 3 * MIB + 512;
    let disk = MemDisk::new(8 * MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    let data = pattern(len);
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 8, &data, 0), (1, OK));
    assert!(disk.state().data[4096..4096 + len] == data[..]);
    let (used, status) = rig.request(VIRTIO_BLK_T_IN, 8, &[], len as u32);
    assert_eq!((used, status), (len as u32 + 1, OK));
    assert!(rig.driver.read(BUF, len).expect("data") == data);
}

#[test]
fn requests_over_the_block_layer_limit_fail() {
    // Two aliasing 1.1 GiB descriptors: 2.2 GiB, more than qsd's
    // BDRV_REQUEST_MAX_SECTORS. The memory is reserved, never touched.
    const BIG: u64 = 1_100 << 20;
    let mut driver = Driver::new(&[(0, 1_200 << 20)], 16).expect("driver");
    let engine = Engine::new(MemDisk::new(MIB), &opts(512, true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    driver.write(STATUS, &[0xee]).expect("status");
    driver
        .add_chain(&[
            Desc::r(HDR, 16),
            Desc::w(BUF, BIG as u32),
            Desc::w(BUF, BIG as u32),
            Desc::w(STATUS, 1),
        ])
        .expect("chain");
    let chain = driver.pop().expect("chain");
    assert_eq!(rt.block_on(engine.process(chain)), 2 * BIG as u32 + 1);
    assert_eq!(driver.read(STATUS, 1).expect("status"), [IOERR]);
}

#[test]
fn indirect_descriptors() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk, &opts(512, true));
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 2))
        .expect("header");
    rig.driver.write(STATUS, &[0xee]).expect("status");
    let table = DATA + 0x1000;
    rig.driver
        .add_indirect(
            table,
            &[
                Desc::r(HDR, 16),
                Desc::w(BUF, 512),
                Desc::w(BUF + 512, 512),
                Desc::w(STATUS, 1),
            ],
        )
        .expect("indirect");
    assert_eq!(rig.serve(), Ok(1025));
    assert_eq!(rig.status(), OK);
    assert_eq!(
        rig.driver.read(BUF, 1024).expect("data"),
        pattern(MIB)[1024..2048]
    );
}

#[test]
fn descriptor_loops_end() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk, &opts(512, true));
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    let write = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    // A loop in the ring's table: 0 -> 1 -> 2 -> 1 ... The iterator stops
    // after queue-size descriptors; the chain is served or refused, and
    // the used length stays within what the walk saw.
    let d = &rig.driver;
    d.put_desc(0, 0, Descriptor::new(HDR, 16, next, 1))
        .expect("d0");
    d.put_desc(0, 1, Descriptor::new(BUF, 512, next | write, 2))
        .expect("d1");
    d.put_desc(0, 2, Descriptor::new(STATUS, 1, next | write, 1))
        .expect("d2");
    rig.driver.make_available(0).expect("avail");
    let used = rig.serve().expect("a looping chain is cut, not refused");
    assert!(used <= 128 * 513, "used {used}");

    // A loop inside an indirect table, and an indirect descriptor inside
    // an indirect table (forbidden: the walk stops there).
    let table = DATA + 0x1000;
    let indirect = virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT as u16;
    let d = &rig.driver;
    d.put_desc(table, 0, Descriptor::new(HDR, 16, next, 1))
        .expect("i0");
    d.put_desc(table, 1, Descriptor::new(STATUS, 1, next | write, 0))
        .expect("i1");
    d.put_desc(0, 5, Descriptor::new(table, 32, indirect, 0))
        .expect("head");
    rig.driver.make_available(5).expect("avail");
    assert!(rig.serve().expect("cut loop") <= 2);
    let d = &rig.driver;
    d.put_desc(table, 0, Descriptor::new(HDR, 16, next, 1))
        .expect("i0");
    d.put_desc(table, 1, Descriptor::new(table, 32, indirect, 0))
        .expect("nested");
    rig.driver.make_available(5).expect("avail");
    assert_eq!(rig.serve(), Err(ChainError::MissingHeaders));
    // The device still serves the next request.
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 512), (513, OK));
}

#[test]
fn broken_chains_are_refused_without_writing() {
    let disk = patterned_disk(MIB);
    let mut rig = Rig::new(disk.clone(), &opts(512, true));
    rig.driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    let end = 8 * MIB as u64;
    let cases: Vec<(Vec<Desc>, ChainError)> = vec![
        (
            vec![Desc::r(HDR, 15), Desc::w(STATUS, 1)],
            ChainError::OutHeaderTooShort,
        ),
        (
            vec![Desc::r(HDR, 8), Desc::r(HDR + 8, 7), Desc::w(STATUS, 1)],
            ChainError::OutHeaderTooShort,
        ),
        (vec![Desc::r(HDR, 16)], ChainError::MissingHeaders),
        (
            vec![Desc::w(BUF, 512), Desc::w(STATUS, 1)],
            ChainError::MissingHeaders,
        ),
        (
            vec![Desc::r(HDR, 16), Desc::w(STATUS, 1), Desc::w(STATUS, 0)],
            ChainError::InHeaderTooShort,
        ),
        (
            vec![
                Desc::r(HDR, 16),
                Desc::w(BUF, 512),
                Desc::r(HDR, 16),
                Desc::w(STATUS, 1),
            ],
            ChainError::WrongOrder,
        ),
        (
            vec![
                Desc::r(HDR, 16),
                Desc::w(end + 4096, 512),
                Desc::w(STATUS, 1),
            ],
            ChainError::OutsideMemory {
                addr: end + 4096,
                len: 512,
            },
        ),
        (
            vec![
                Desc::r(HDR, 16),
                Desc::w(end - 256, 512),
                Desc::w(STATUS, 1),
            ],
            ChainError::OutsideMemory {
                addr: end - 256,
                len: 512,
            },
        ),
        (
            vec![Desc::r(u64::MAX - 7, 16), Desc::w(STATUS, 1)],
            ChainError::OutsideMemory {
                addr: u64::MAX - 7,
                len: 16,
            },
        ),
        (
            vec![Desc::r(HDR, 16), Desc::w(BUF, 512), Desc::w(end, 1)],
            ChainError::OutsideMemory { addr: end, len: 1 },
        ),
    ];
    for (descs, err) in cases {
        rig.driver.write(STATUS, &[0xee]).expect("status");
        rig.driver.write(BUF, &[0xcc; 512]).expect("buf");
        assert_eq!(rig.submit(&descs), Err(err.clone()), "{descs:?}");
        assert_eq!(rig.status(), 0xee, "{err}: status written");
        assert!(
            rig.driver
                .read(BUF, 512)
                .expect("buf")
                .iter()
                .all(|&b| b == 0xcc)
        );
        // process() itself answers 0, and the queue goes on.
        assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 512), (513, OK));
    }
    // A broken chain gets used length 0 through process().
    rig.driver.add_chain(&[Desc::r(HDR, 16)]).expect("chain");
    let chain = rig.driver.pop().expect("chain");
    assert_eq!(rig.rt.block_on(rig.engine.process(chain)), 0);
    assert!(disk.state().writes_fua.is_empty());
}

#[test]
fn descriptors_may_straddle_memory_regions() {
    // Two adjacent regions: a buffer across the seam is fine.
    let mut driver = Driver::new(&[(0, MIB), (MIB as u64, MIB)], 16).expect("driver");
    let disk = patterned_disk(MIB);
    let engine = Engine::new(disk, &opts(512, true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    driver
        .write(HDR, &header(VIRTIO_BLK_T_IN, 0))
        .expect("header");
    let at = MIB as u64 - 100;
    driver
        .add_chain(&[Desc::r(HDR, 16), Desc::w(at, 4096), Desc::w(STATUS, 1)])
        .expect("chain");
    let chain = driver.pop().expect("chain");
    assert_eq!(rt.block_on(engine.process_chain(chain)), Ok(4097));
    assert_eq!(driver.read(at, 4096).expect("data"), pattern(4096));
}

#[test]
fn chunks_cut_segments_into_windows() {
    use vm_memory::GuestAddress;
    let seg = |a: u64, l: u32| request::Segment {
        addr: GuestAddress(a),
        len: l,
    };
    let segs = [seg(0, 300), seg(1000, 500), seg(5000, 200)];
    let c = engine::chunks(&segs, 512);
    assert_eq!(
        c,
        [
            (0, vec![seg(0, 300), seg(1000, 212)]),
            (512, vec![seg(1212, 288), seg(5000, 200)]),
        ]
    );
    assert_eq!(engine::chunks(&segs, 1000).len(), 1);
    assert_eq!(engine::chunks(&[seg(0, 2048)], 512).len(), 4);
    assert!(engine::chunks(&[], 512).is_empty());
}

// -- real nodes --------------------------------------------------------------

/// A private scratch directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "virtio-blk-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn file_node_round_trip() {
    let dir = TempDir::new();
    let path = dir.0.join("img");
    std::fs::write(&path, pattern(2 * MIB)).expect("image");
    let graph = BlockGraph::new();
    let o = BlockdevOptions::new(DriverOptions::File(FileOptions::new(
        &path.to_string_lossy(),
    )))
    .named("f");
    graph.add(&o).expect("node");
    let dev = graph.get("f").expect("node");
    let mut rig = Rig::new(dev, &opts(4096, true));

    let data: Vec<u8> = (0..65536).map(|i| (i * 13 % 256) as u8).collect();
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 64, &data, 0), (1, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0), (1, OK));
    assert_eq!(
        rig.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &range(256, 8, 1), 0),
        (1, OK)
    );
    assert_eq!(
        rig.request(VIRTIO_BLK_T_DISCARD, 0, &range(512, 8, 0), 0),
        (1, OK)
    );
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 64, &[], 65536), (65537, OK));
    assert_eq!(rig.driver.read(BUF, 65536).expect("data"), data);
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 4096, &[], 512), (513, IOERR));

    let mut expect = pattern(2 * MIB);
    expect[64 * 512..64 * 512 + 65536].copy_from_slice(&data);
    expect[256 * 512..264 * 512].fill(0);
    let file = std::fs::read(&path).expect("image");
    assert!(file == expect, "image content");
}

#[test]
fn null_co_node() {
    let graph = BlockGraph::new();
    let o = BlockdevOptions::new(DriverOptions::NullCo(NullOptions::default())).named("n");
    graph.add(&o).expect("node");
    let dev = graph.get("n").expect("node");
    let cap = dev.size();
    let mut rig = Rig::new(dev, &opts(512, true));
    assert_eq!(rig.request(VIRTIO_BLK_T_OUT, 0, &[7; 4096], 0), (1, OK));
    assert_eq!(rig.request(VIRTIO_BLK_T_IN, 0, &[], 4096), (4097, OK));
    assert!(
        rig.driver
            .read(BUF, 4096)
            .expect("data")
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(
        rig.request(VIRTIO_BLK_T_IN, cap / 512, &[], 512),
        (513, IOERR)
    );
}

#[test]
fn process_future_is_send() {
    fn send<T: Send>(_: &T) {}
    let driver = Driver::new(&[(0, MIB)], 16).expect("driver");
    let engine = Engine::new(MemDisk::new(MIB), &opts(512, true));
    let mut driver = driver;
    driver.add_chain(&[Desc::r(HDR, 16)]).expect("chain");
    let chain = driver.pop().expect("chain");
    let fut = engine.process(chain);
    send(&fut);
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
}

/// 1 MiB sequential reads and writes through the engine against a `file`
/// node on /dev/shm (what bench/vhost-user-blk.sh measures end to end),
/// next to a plain `pread` of the same sizes into guest memory: the
/// engine's own cost. A measurement, not a check: run with
/// `cargo test --release -p storage-exports --features vhost-user-blk
/// --lib bench_1mib -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark; run by hand with --release"]
fn bench_1mib_sequential() {
    use std::os::fd::AsRawFd;
    use std::time::Instant;
    const IMG: usize = 256 * MIB;
    const ROUNDS: usize = 4;
    let dir = std::path::PathBuf::from(format!("/dev/shm/virtio-blk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("img");
    std::fs::write(&path, pattern(IMG)).expect("image");
    let graph = BlockGraph::new();
    let o = BlockdevOptions::new(DriverOptions::File(FileOptions::new(
        &path.to_string_lossy(),
    )))
    .named("f");
    graph.add(&o).expect("node");
    let mut rig = Rig::new(graph.get("f").expect("node"), &opts(512, true));
    let per = IMG / MIB;
    rig.driver.write(BUF, &pattern(MIB)).expect("data");

    for (name, t) in [("read", VIRTIO_BLK_T_IN), ("write", VIRTIO_BLK_T_OUT)] {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            for i in 0..per {
                rig.driver
                    .write(HDR, &header(t, (i * MIB / 512) as u64))
                    .expect("hdr");
                let data = if t == VIRTIO_BLK_T_IN {
                    Desc::w(BUF, MIB as u32)
                } else {
                    Desc::r(BUF, MIB as u32)
                };
                let used = rig
                    .submit(&[Desc::r(HDR, 16), data, Desc::w(STATUS, 1)])
                    .expect("served");
                assert!(used > 0 && rig.status() == OK);
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!("engine {name}: {:.0} MiB/s", (ROUNDS * per) as f64 / s);
    }
    // 4 KiB reads: the engine's cost per request.
    let n = 100_000;
    let start = Instant::now();
    for i in 0..n {
        let sector = (i * 7919 % (IMG / 4096)) as u64 * 8;
        rig.driver
            .write(HDR, &header(VIRTIO_BLK_T_IN, sector))
            .expect("hdr");
        let used = rig
            .submit(&[Desc::r(HDR, 16), Desc::w(BUF, 4096), Desc::w(STATUS, 1)])
            .expect("served");
        assert!(used == 4097 && rig.status() == OK);
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "engine 4k read: {:.2} us/request (driver side included)",
        s * 1e6 / n as f64
    );
    // The floor: pread straight into guest memory.
    let f = std::fs::File::open(&path).expect("open");
    let mem = rig.driver.memory();
    let host = vm_memory::GuestMemory::get_slices(
        &*mem,
        vm_memory::GuestAddress(BUF),
        MIB,
        vm_memory::Permissions::Write,
    )
    .expect("slice")
    .next()
    .expect("one slice")
    .expect("slice")
    .ptr_guard_mut()
    .as_ptr();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for i in 0..per {
            // SAFETY: `host` maps MIB bytes of guest memory held by `mem`.
            let r = unsafe { libc::pread(f.as_raw_fd(), host.cast(), MIB, (i * MIB) as i64) };
            assert_eq!(r, MIB as isize);
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "pread into guest memory: {:.0} MiB/s",
        (ROUNDS * per) as f64 / s
    );
    let _ = std::fs::remove_dir_all(&dir);
}
