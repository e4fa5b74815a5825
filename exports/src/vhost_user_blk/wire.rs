//! The few parts of the vhost-user wire format the relay looks at: the
//! 12-byte message header, the request it snoops on, and the message it
//! sends itself. Bytes in, values
//! out; no sockets. Everything else is vhost-user-backend's to parse.

/// `request`, `flags`, `size`: three little-endian u32s.
pub const HEADER_LEN: usize = 12;

/// The largest payload vhost (and libvhost-user) take; a bigger `size`
/// cannot be a valid message, so the relay ends the connection.
pub const MAX_PAYLOAD: usize = 0x1000;

/// At most this many descriptors come with one message (vhost's
/// `MAX_ATTACHED_FD_ENTRIES`).
pub const MAX_FDS: usize = 32;

/// Front-end requests the relay looks into.
pub const SET_MEM_TABLE: u32 = 5;
pub const SET_BACKEND_REQ_FD: u32 = 21;
pub const ADD_MEM_REG: u32 = 37;

/// The back-end request that tells the front end to re-read the config
/// space (`VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`).
pub const BACKEND_CONFIG_CHANGE_MSG: u32 = 2;

/// Header flags: the version (1).
pub const FLAG_VERSION_1: u32 = 0x1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            request: word(0),
            flags: word(4),
            size: word(8),
        }
    }

    pub fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[0..4].copy_from_slice(&self.request.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// The config-change message as qsd 10.0.2 sends it: version 1, no
/// payload, and no reply asked for even when the front end negotiated
/// REPLY_ACK.
pub fn config_change() -> [u8; HEADER_LEN] {
    Header {
        request: BACKEND_CONFIG_CHANGE_MSG,
        flags: FLAG_VERSION_1,
        size: 0,
    }
    .bytes()
}

/// Where a memory region lies in the file that backs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub size: u64,
    pub mmap_offset: u64,
}

/// The file ranges of the regions of a SET_MEM_TABLE or ADD_MEM_REG
/// payload, in the order of the descriptors that come with it; `None`
/// for any other request, and an empty list for a payload too short to
/// hold what it says (vhost refuses it).
pub fn mem_regions(request: u32, payload: &[u8]) -> Option<Vec<FileRange>> {
    let u64_at = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(payload.get(i..i + 8)?.try_into().ok()?))
    };
    // A region: guest address, size, user address, mmap offset.
    let region = |at: usize| -> Option<FileRange> {
        Some(FileRange {
            size: u64_at(at + 8)?,
            mmap_offset: u64_at(at + 24)?,
        })
    };
    match request {
        SET_MEM_TABLE => {
            let n = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
            Some(
                (0..n.min(MAX_FDS))
                    .map_while(|i| region(8 + i * 32))
                    .collect(),
            )
        }
        ADD_MEM_REG => Some(region(8).into_iter().collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_config_change() {
        let h = Header {
            request: 21,
            flags: 0x9,
            size: 8,
        };
        assert_eq!(Header::parse(&h.bytes()), h);
        assert_eq!(config_change(), [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut table = 2u32.to_le_bytes().to_vec();
        table.extend_from_slice(&[0; 4]);
        for (size, off) in [(4096u64, 0u64), (8192, 4096)] {
            for v in [0u64, size, 0x7f00_0000_0000, off] {
                table.extend_from_slice(&v.to_le_bytes());
            }
        }
        assert_eq!(
            mem_regions(SET_MEM_TABLE, &table),
            Some(vec![
                FileRange {
                    size: 4096,
                    mmap_offset: 0
                },
                FileRange {
                    size: 8192,
                    mmap_offset: 4096
                }
            ])
        );
        // Cut short: the regions that are whole.
        assert_eq!(
            mem_regions(SET_MEM_TABLE, &table[..50]).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(
            mem_regions(ADD_MEM_REG, &table[..40]).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(mem_regions(1, &table), None);
    }
}
