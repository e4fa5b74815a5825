//! `block-export-add type=vhost-user-blk` options, checked as qsd 10.0.2
//! checks them, in its order (logical block size, queues, address).

use std::path::PathBuf;

/// Where the export listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VhostUserListen {
    /// A unix socket we create (replacing whatever is at the path) and
    /// remove when the export goes.
    Unix(PathBuf),
    /// An inherited listening unix socket (`addr.type=fd` on the command
    /// line), owned through `sockets::inherit_listener`.
    Fd(i32),
}

/// The export's options as the glue hands them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserBlkOptions {
    pub listen: VhostUserListen,
    /// `logical-block-size`; `None` is qsd's default of 512.
    pub logical_block_size: Option<u64>,
    /// `num-queues`; `None` is 1.
    pub num_queues: Option<u16>,
    pub writable: bool,
    pub writethrough: bool,
}

/// The largest `logical-block-size` qsd takes (its `check_block_size`).
pub const MAX_LOGICAL_BLOCK_SIZE: u64 = 2 << 20;

/// The most queues an export serves (qsd's limit is 65535).
pub const MAX_NUM_QUEUES: usize = 64;

/// The checked values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub logical_block_size: u32,
    pub num_queues: u16,
}

impl VhostUserBlkOptions {
    /// qsd's checks and texts. A `logical-block-size` of 0 passes, as in
    /// qsd (0 means "unset" to its checker, and the device then reports a
    /// block size of 0).
    pub fn check(&self) -> Result<Checked, String> {
        let lbs = self.logical_block_size.unwrap_or(512);
        if lbs != 0 && (!lbs.is_power_of_two() || !(512..=MAX_LOGICAL_BLOCK_SIZE).contains(&lbs)) {
            return Err(format!(
                "parameter logical-block-size must be a power of 2 between 512 and {MAX_LOGICAL_BLOCK_SIZE}"
            ));
        }
        let num_queues = self.num_queues.unwrap_or(1);
        if num_queues == 0 {
            return Err("num-queues must be greater than 0".into());
        }
        // vhost-user-backend assigns queues to threads with a 64-bit mask
        // (and panics past it); qsd would take up to 65535.
        if usize::from(num_queues) > MAX_NUM_QUEUES {
            return Err(format!(
                "num-queues must be at most {MAX_NUM_QUEUES} (the vhost-user back end's limit)"
            ));
        }
        Ok(Checked {
            // Checked above: at most 2 MiB.
            logical_block_size: lbs as u32,
            num_queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(lbs: Option<u64>, nq: Option<u16>) -> VhostUserBlkOptions {
        VhostUserBlkOptions {
            listen: VhostUserListen::Unix("/x".into()),
            logical_block_size: lbs,
            num_queues: nq,
            writable: false,
            writethrough: false,
        }
    }

    #[test]
    fn qsd_limits() {
        let lbs_err =
            Err("parameter logical-block-size must be a power of 2 between 512 and 2097152".into());
        for bad in [1, 256, 511, 513, 1000, 4 << 20, 1 << 32] {
            assert_eq!(opts(Some(bad), None).check(), lbs_err, "{bad}");
        }
        for good in [0u64, 512, 4096, 2 << 20] {
            assert_eq!(
                opts(Some(good), None).check().map(|c| c.logical_block_size),
                Ok(good as u32)
            );
        }
        assert_eq!(
            opts(None, Some(0)).check(),
            Err("num-queues must be greater than 0".into())
        );
        assert_eq!(
            opts(None, Some(65)).check(),
            Err("num-queues must be at most 64 (the vhost-user back end's limit)".into())
        );
        assert_eq!(opts(None, Some(64)).check().map(|c| c.num_queues), Ok(64));
        // The block size is checked first, as in qsd.
        assert_eq!(opts(Some(3), Some(0)).check(), lbs_err);
        assert_eq!(
            opts(None, None).check(),
            Ok(Checked {
                logical_block_size: 512,
                num_queues: 1
            })
        );
    }
}
