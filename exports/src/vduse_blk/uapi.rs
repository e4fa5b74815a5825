//! The kernel's VDUSE interface (linux/vduse.h, API version 0), in our
//! own definitions: the ioctl request numbers (encoded with nix's
//! `request_code_*`, checked against linux-raw-sys in the tests), the
//! structs they carry, and the codec of the messages read from and
//! written to `/dev/vduse/$NAME`. Nothing here touches a file descriptor.

use std::mem::size_of;

/// `VDUSE_BASE`: the ioctl type byte.
pub const BASE: u8 = 0x81;
/// The API version we speak.
pub const API_VERSION: u64 = 0;
/// `VDUSE_NAME_MAX`: device names, NUL included.
pub const NAME_MAX: usize = 256;

/// `struct vduse_dev_config` without its trailing config bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DevConfig {
    pub name: [u8; NAME_MAX],
    pub vendor_id: u32,
    pub device_id: u32,
    pub features: u64,
    pub vq_num: u32,
    pub vq_align: u32,
    pub reserved: [u32; 13],
    pub config_size: u32,
}

/// `struct vduse_iotlb_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IotlbEntry {
    /// mmap offset on the returned descriptor.
    pub offset: u64,
    pub start: u64,
    /// Inclusive.
    pub last: u64,
    pub perm: u8,
}

pub const ACCESS_RO: u8 = 0x1;
pub const ACCESS_WO: u8 = 0x2;
pub const ACCESS_RW: u8 = 0x3;

/// `struct vduse_config_data` without its trailing bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigData {
    pub offset: u32,
    pub length: u32,
}

/// `struct vduse_vq_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VqConfig {
    pub index: u32,
    pub max_size: u16,
    pub reserved: [u16; 13],
}

/// `struct vduse_vq_info` (split queues: the union's first u16 is the
/// avail index).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VqInfo {
    pub index: u32,
    pub num: u32,
    pub desc_addr: u64,
    pub driver_addr: u64,
    pub device_addr: u64,
    /// `split.avail_index` / the packed state's four u16.
    pub state: [u16; 4],
    pub ready: u8,
}

/// `struct vduse_vq_eventfd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VqEventfd {
    pub index: u32,
    /// -1 de-assigns.
    pub fd: i32,
}

pub const EVENTFD_DEASSIGN: i32 = -1;

/// `struct vduse_iova_umem`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IovaUmem {
    pub uaddr: u64,
    pub iova: u64,
    pub size: u64,
    pub reserved: [u64; 3],
}

/// `struct vduse_iova_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IovaInfo {
    pub start: u64,
    pub last: u64,
    pub capability: u64,
    pub reserved: [u64; 3],
}

/// `VDUSE_IOVA_CAP_UMEM`: the region takes user memory (REG_UMEM).
pub const IOVA_CAP_UMEM: u64 = 1;

// The request numbers, _IOR/_IOW/_IOWR(VDUSE_BASE, nr, type).
pub const GET_API_VERSION: u32 = nix::request_code_read!(BASE, 0x00, size_of::<u64>()) as u32;
pub const SET_API_VERSION: u32 = nix::request_code_write!(BASE, 0x01, size_of::<u64>()) as u32;
pub const CREATE_DEV: u32 = nix::request_code_write!(BASE, 0x02, size_of::<DevConfig>()) as u32;
pub const DESTROY_DEV: u32 = nix::request_code_write!(BASE, 0x03, NAME_MAX) as u32;
pub const IOTLB_GET_FD: u32 =
    nix::request_code_readwrite!(BASE, 0x10, size_of::<IotlbEntry>()) as u32;
pub const DEV_GET_FEATURES: u32 = nix::request_code_read!(BASE, 0x11, size_of::<u64>()) as u32;
pub const DEV_SET_CONFIG: u32 =
    nix::request_code_write!(BASE, 0x12, size_of::<ConfigData>()) as u32;
pub const DEV_INJECT_CONFIG_IRQ: u32 = nix::request_code_none!(BASE, 0x13) as u32;
pub const VQ_SETUP: u32 = nix::request_code_write!(BASE, 0x14, size_of::<VqConfig>()) as u32;
pub const VQ_GET_INFO: u32 = nix::request_code_readwrite!(BASE, 0x15, size_of::<VqInfo>()) as u32;
pub const VQ_SETUP_KICKFD: u32 =
    nix::request_code_write!(BASE, 0x16, size_of::<VqEventfd>()) as u32;
pub const VQ_INJECT_IRQ: u32 = nix::request_code_write!(BASE, 0x17, size_of::<u32>()) as u32;
pub const IOTLB_REG_UMEM: u32 = nix::request_code_write!(BASE, 0x18, size_of::<IovaUmem>()) as u32;
pub const IOTLB_DEREG_UMEM: u32 =
    nix::request_code_write!(BASE, 0x19, size_of::<IovaUmem>()) as u32;
pub const IOTLB_GET_INFO: u32 =
    nix::request_code_readwrite!(BASE, 0x1a, size_of::<IovaInfo>()) as u32;

/// `sizeof(struct vduse_dev_request)` and `sizeof(struct
/// vduse_dev_response)`: one message per read(2)/write(2).
pub const MSG_LEN: usize = 152;
/// Where the union starts in both.
const PAYLOAD: usize = 24;

/// `VDUSE_REQ_RESULT_*`.
pub const RESULT_OK: u32 = 0;
pub const RESULT_FAILED: u32 = 1;

/// A message the kernel sends the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `VDUSE_GET_VQ_STATE`: the queue's next avail index, please.
    GetVqState { queue: u32 },
    /// `VDUSE_SET_STATUS`: the driver wrote the device status.
    SetStatus { status: u8 },
    /// `VDUSE_UPDATE_IOTLB`: mappings in [start, last] changed; drop them.
    UpdateIotlb { start: u64, last: u64 },
    /// A type this API version does not define: answered FAILED.
    Unknown { kind: u32 },
}

/// One request as read from the device: its id and what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub message: Message,
}

/// A read that was not one whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortMessage(pub usize);

impl std::fmt::Display for ShortMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VDUSE message of {} bytes, expected {MSG_LEN}", self.0)
    }
}

impl std::error::Error for ShortMessage {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl Request {
    /// Decodes what one read(2) returned.
    pub fn decode(b: &[u8]) -> Result<Request, ShortMessage> {
        if b.len() != MSG_LEN {
            return Err(ShortMessage(b.len()));
        }
        let kind = u32_at(b, 0);
        let message = match kind {
            0 => Message::GetVqState {
                queue: u32_at(b, PAYLOAD),
            },
            1 => Message::SetStatus { status: b[PAYLOAD] },
            2 => Message::UpdateIotlb {
                start: u64_at(b, PAYLOAD),
                last: u64_at(b, PAYLOAD + 8),
            },
            kind => Message::Unknown { kind },
        };
        Ok(Request {
            id: u32_at(b, 4),
            message,
        })
    }
}

/// The answer to request `id`; `avail_index` only for GET_VQ_STATE.
pub fn encode_response(id: u32, result: u32, vq: Option<(u32, u16)>) -> [u8; MSG_LEN] {
    let mut b = [0u8; MSG_LEN];
    b[0..4].copy_from_slice(&id.to_le_bytes());
    b[4..8].copy_from_slice(&result.to_le_bytes());
    if let Some((index, avail)) = vq {
        b[PAYLOAD..PAYLOAD + 4].copy_from_slice(&index.to_le_bytes());
        b[PAYLOAD + 4..PAYLOAD + 6].copy_from_slice(&avail.to_le_bytes());
    }
    b
}

/// The name as `char[VDUSE_NAME_MAX]`, or None if it does not fit with
/// its NUL or holds one.
pub fn name_bytes(name: &str) -> Option<[u8; NAME_MAX]> {
    let n = name.as_bytes();
    if n.len() >= NAME_MAX || n.contains(&0) {
        return None;
    }
    let mut b = [0u8; NAME_MAX];
    b[..n.len()].copy_from_slice(n);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_raw_sys::ioctl as k;

    #[test]
    fn request_numbers_are_the_kernels() {
        // linux-raw-sys is generated from the kernel's own headers.
        assert_eq!(GET_API_VERSION, k::VDUSE_GET_API_VERSION);
        assert_eq!(SET_API_VERSION, k::VDUSE_SET_API_VERSION);
        assert_eq!(CREATE_DEV, k::VDUSE_CREATE_DEV);
        assert_eq!(DESTROY_DEV, k::VDUSE_DESTROY_DEV);
        assert_eq!(IOTLB_GET_FD, k::VDUSE_IOTLB_GET_FD);
        assert_eq!(DEV_GET_FEATURES, k::VDUSE_DEV_GET_FEATURES);
        assert_eq!(DEV_SET_CONFIG, k::VDUSE_DEV_SET_CONFIG);
        assert_eq!(DEV_INJECT_CONFIG_IRQ, k::VDUSE_DEV_INJECT_CONFIG_IRQ);
        assert_eq!(VQ_SETUP, k::VDUSE_VQ_SETUP);
        assert_eq!(VQ_GET_INFO, k::VDUSE_VQ_GET_INFO);
        assert_eq!(VQ_SETUP_KICKFD, k::VDUSE_VQ_SETUP_KICKFD);
        assert_eq!(VQ_INJECT_IRQ, k::VDUSE_VQ_INJECT_IRQ);
    }

    #[test]
    fn struct_sizes_are_the_headers() {
        // The sizes linux/vduse.h gives these structs on x86-64 (the
        // last three ioctls are newer than linux-raw-sys 0.12's list).
        assert_eq!(size_of::<DevConfig>(), 336);
        assert_eq!(size_of::<IotlbEntry>(), 32);
        assert_eq!(size_of::<ConfigData>(), 8);
        assert_eq!(size_of::<VqConfig>(), 32);
        assert_eq!(size_of::<VqInfo>(), 48);
        assert_eq!(size_of::<VqEventfd>(), 8);
        assert_eq!(size_of::<IovaUmem>(), 48);
        assert_eq!(size_of::<IovaInfo>(), 48);
        assert_eq!(IOTLB_REG_UMEM, 0x4030_8118);
        assert_eq!(IOTLB_DEREG_UMEM, 0x4030_8119);
        assert_eq!(IOTLB_GET_INFO, 0xc030_811a);
    }

    #[test]
    fn messages_round_trip() {
        let mut b = [0u8; MSG_LEN];
        b[0..4].copy_from_slice(&2u32.to_le_bytes());
        b[4..8].copy_from_slice(&77u32.to_le_bytes());
        b[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
        b[32..40].copy_from_slice(&0x1fffu64.to_le_bytes());
        assert_eq!(
            Request::decode(&b),
            Ok(Request {
                id: 77,
                message: Message::UpdateIotlb {
                    start: 0x1000,
                    last: 0x1fff
                }
            })
        );
        b[0] = 9;
        assert_eq!(
            Request::decode(&b).map(|r| r.message),
            Ok(Message::Unknown { kind: 9 })
        );
        assert_eq!(Request::decode(&b[..10]), Err(ShortMessage(10)));
        let r = encode_response(5, RESULT_OK, Some((3, 0xabcd)));
        assert_eq!(&r[0..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[24..30], &[3, 0, 0, 0, 0xcd, 0xab]);
        assert!(name_bytes(&"x".repeat(255)).is_some());
        assert!(name_bytes(&"x".repeat(256)).is_none());
        assert!(name_bytes("a\0b").is_none());
    }
}
