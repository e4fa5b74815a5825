//! Permissions on nodes and QEMU's image locking.
//!
//! A user of a node (an export, a parent node, a resize in progress)
//! claims permissions it needs and says which ones it lets others have,
//! QEMU's `BLK_PERM_*`. A `file` node turns the sum of its claims into OFD
//! byte-range locks exactly as QEMU's file-posix does: byte `100 + bit` is
//! read-locked for each permission held and byte `200 + bit` for each
//! permission not shared. Another process (qemu-img, QEMU, another daemon)
//! checks those bytes before it opens the image, and we check theirs.

use std::os::fd::{AsRawFd, RawFd};

use super::graph::Error;

/// A claim: permissions held and permissions shared with other users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub perm: u8,
    pub shared: u8,
}

impl Perms {
    pub const CONSISTENT_READ: u8 = 0x01;
    pub const WRITE: u8 = 0x02;
    pub const WRITE_UNCHANGED: u8 = 0x04;
    pub const RESIZE: u8 = 0x08;
    pub const ALL: u8 = 0x0f;

    /// Holds nothing, shares everything: a node nobody uses.
    pub const NONE: Perms = Perms {
        perm: 0,
        shared: Perms::ALL,
    };

    /// What a QEMU block export claims on its node: consistent reads (and
    /// writes when writable), sharing everything but resize.
    pub fn export(writable: bool) -> Perms {
        let write = if writable { Perms::WRITE } else { 0 };
        Perms {
            perm: Perms::CONSISTENT_READ | write,
            shared: Perms::ALL & !Perms::RESIZE,
        }
    }

    /// What `block_resize` claims while it runs.
    pub fn resize() -> Perms {
        Perms {
            perm: Perms::RESIZE,
            shared: Perms::ALL,
        }
    }

    /// The combined effect of two claims.
    pub fn and(self, other: Perms) -> Perms {
        Perms {
            perm: self.perm | other.perm,
            shared: self.shared & other.shared,
        }
    }

    pub fn writes(self) -> bool {
        self.perm & (Perms::WRITE | Perms::WRITE_UNCHANGED) != 0
    }
}

/// QEMU's `bdrv_perm_names`.
fn perm_name(bit: u8) -> &'static str {
    match bit {
        Perms::CONSISTENT_READ => "consistent read",
        Perms::WRITE => "write",
        Perms::WRITE_UNCHANGED => "write unchanged",
        _ => "resize",
    }
}

const LOCK_PERM_BASE: i64 = 100;
const LOCK_SHARED_BASE: i64 = 200;
const PERM_BITS: u32 = 4;

/// The locks one file descriptor holds.
#[derive(Debug, Default)]
pub(crate) struct LockState {
    /// Permission bits whose byte `100 + bit` we hold.
    locked_perm: u8,
    /// Permission bits whose byte `200 + bit` we hold (not shared).
    locked_unshared: u8,
}

fn ofd_lock(
    fd: RawFd,
    cmd: libc::c_int,
    ty: libc::c_int,
    start: i64,
) -> std::io::Result<libc::flock> {
    // SAFETY: flock is plain data; zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    loop {
        // SAFETY: fcntl with a valid flock pointer.
        let r = unsafe { libc::fcntl(fd, cmd, &mut fl) };
        if r == 0 {
            return Ok(fl);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl LockState {
    /// Takes the locks for `p`, checks that no other holder conflicts, and
    /// drops locks no longer needed; on a conflict, the old locks stay.
    /// QEMU's `raw_handle_perm_lock` (prepare, then commit or abort).
    pub(crate) fn set(&mut self, fd: &impl AsRawFd, filename: &str, p: Perms) -> Result<(), Error> {
        let fd = fd.as_raw_fd();
        let unshared = Perms::ALL & !p.shared;
        let (old_perm, old_unshared) = (self.locked_perm, self.locked_unshared);
        let prepared = self
            .apply(fd, old_perm | p.perm, old_unshared | unshared, false)
            .and_then(|()| check(fd, p, filename));
        if let Err(e) = prepared {
            // Best effort back to the old state, as QEMU's abort does.
            let _ = self.apply(fd, old_perm, old_unshared, true);
            return Err(e);
        }
        self.apply(fd, p.perm, unshared, true)
    }

    /// QEMU's `raw_apply_lock_bytes`.
    fn apply(&mut self, fd: RawFd, perm: u8, unshared: u8, unlock: bool) -> Result<(), Error> {
        for (base, want, held) in [
            (LOCK_PERM_BASE, perm, &mut self.locked_perm),
            (LOCK_SHARED_BASE, unshared, &mut self.locked_unshared),
        ] {
            for i in 0..PERM_BITS {
                let bit = 1u8 << i;
                let off = base + i64::from(i);
                if want & bit != 0 && *held & bit == 0 {
                    if ofd_lock(fd, libc::F_OFD_SETLK, libc::F_RDLCK, off).is_err() {
                        return Err(Error::new(format!("Failed to lock byte {off}")));
                    }
                    *held |= bit;
                } else if unlock && *held & bit != 0 && want & bit == 0 {
                    if ofd_lock(fd, libc::F_OFD_SETLK, libc::F_UNLCK, off).is_err() {
                        return Err(Error::new(format!("Failed to unlock byte {off}")));
                    }
                    *held &= !bit;
                }
            }
        }
        Ok(())
    }

    /// Drops every lock (the node no longer has users).
    pub(crate) fn release(&mut self, fd: &impl AsRawFd) {
        let _ = self.apply(fd.as_raw_fd(), 0, 0, true);
    }
}

/// QEMU's `raw_check_lock_bytes`: would another holder conflict with `p`?
fn check(fd: RawFd, p: Perms, filename: &str) -> Result<(), Error> {
    let conflict = |off: i64| match ofd_lock(fd, libc::F_OFD_GETLK, libc::F_WRLCK, off) {
        Ok(fl) => i32::from(fl.l_type) != libc::F_UNLCK,
        Err(_) => true,
    };
    let hint = format!("Is another process using the image [{filename}]?");
    for i in 0..PERM_BITS {
        let bit = 1u8 << i;
        if p.perm & bit != 0 && conflict(LOCK_SHARED_BASE + i64::from(i)) {
            let msg = format!("Failed to get \"{}\" lock", perm_name(bit));
            return Err(Error::new(msg).with_hint(hint));
        }
    }
    for i in 0..PERM_BITS {
        let bit = 1u8 << i;
        if p.shared & bit == 0 && conflict(LOCK_PERM_BASE + i64::from(i)) {
            let msg = format!("Failed to get shared \"{}\" lock", perm_name(bit));
            return Err(Error::new(msg).with_hint(hint));
        }
    }
    Ok(())
}
