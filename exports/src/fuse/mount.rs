//! Mounting and unmounting a FUSE filesystem on the export's file, and
//! cloning `/dev/fuse` descriptors for extra request queues.
//!
//! As root (more exactly: when `mount(2)` is allowed) we mount directly;
//! otherwise the setuid helper `fusermount3` mounts for us and passes the
//! `/dev/fuse` descriptor back over a socket named by `_FUSE_COMMFD`, the
//! helper's documented protocol.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::session::MAX_READ;

/// `FUSE_DEV_IOC_CLONE`: `_IOR(229, 0, uint32_t)`.
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;
const FUSERMOUNT: &str = "fusermount3";

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

use storage_block::strerror;

/// Checks the mountpoint as qsd does (texts included), and refuses a
/// file something is already mounted on. That check comes first: a stat
/// of a mount served by this very process would need our own queues.
pub fn check_mountpoint(mountpoint: &str) -> Result<(), String> {
    if let Some(real) = real_path(Path::new(mountpoint))
        && is_mount_point(&real)
    {
        return Err(format!(
            "'{mountpoint}' is already a mount point (is another FUSE export using it?)"
        ));
    }
    let meta = std::fs::metadata(mountpoint)
        .map_err(|e| format!("Failed to stat '{mountpoint}': {}", strerror(&e)))?;
    if !meta.file_type().is_file() {
        return Err(format!("'{mountpoint}' is not a regular file"));
    }
    Ok(())
}

/// The canonical path of `p` without looking at `p` itself unless it is
/// a symbolic link (the parent directory is resolved, the name joined).
fn real_path(p: &Path) -> Option<PathBuf> {
    let is_link = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        return std::fs::canonicalize(p).ok();
    }
    let name = p.file_name()?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

/// Whether `path` (canonical) is a mount point in our mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|mp| unescape(mp) == want)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() {
            let oct = &s[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// How the filesystem was mounted (and so how it is unmounted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Syscall,
    Fusermount,
}

/// A mounted FUSE filesystem; unmounted (lazily, as libfuse does) on
/// [`Mount::unmount`] or drop.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    via: Via,
    mounted: bool,
}

impl Mount {
    /// Mounts on `mountpoint` (an existing regular file); returns the
    /// mount and the session's `/dev/fuse` descriptor (non-blocking).
    pub fn create(mountpoint: &Path, allow_other: bool) -> io::Result<(Mount, OwnedFd)> {
        let path =
            real_path(mountpoint).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let mut opts = String::from("default_permissions");
        if allow_other {
            opts.push_str(",allow_other");
        }
        opts.push_str(&format!(",max_read={MAX_READ}"));
        match mount_syscall(&path, &opts) {
            Ok(fd) => Ok((
                Mount {
                    path,
                    via: Via::Syscall,
                    mounted: true,
                },
                fd,
            )),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let fd = mount_fusermount(&path, &opts)?;
                Ok((
                    Mount {
                        path,
                        via: Via::Fusermount,
                        mounted: true,
                    },
                    fd,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Detaches the mount: processes that hold the file open keep it
    /// until the connection closes, new opens see the file underneath.
    pub fn unmount(&mut self) {
        if !std::mem::replace(&mut self.mounted, false) {
            return;
        }
        match self.via {
            Via::Syscall => {
                if let Ok(c) = cstr(&self.path) {
                    // SAFETY: a valid C string.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
            }
            Via::Fusermount => {
                let _ = Command::new(FUSERMOUNT)
                    .args(["-u", "-q", "-z", "--"])
                    .arg(&self.path)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn open_dev() -> io::Result<OwnedFd> {
    // SAFETY: open(2) with a constant path; the result is checked.
    let fd = unsafe {
        libc::open(
            c"/dev/fuse".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mount_syscall(path: &Path, opts: &str) -> io::Result<OwnedFd> {
    let fd = open_dev()?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid},{opts}",
        fd.as_raw_fd(),
        libc::S_IFREG
    );
    let data = CString::new(data).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let target = cstr(path)?;
    // SAFETY: valid C strings; `data` is the fuse option string.
    let r = unsafe {
        libc::mount(
            c"/dev/fuse".as_ptr(),
            target.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Runs `fusermount3` and receives the `/dev/fuse` descriptor it opened.
fn mount_fusermount(path: &Path, opts: &str) -> io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills two descriptors we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from socketpair.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let their_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(FUSERMOUNT);
    cmd.arg("-o")
        .arg(opts)
        .arg("--")
        .arg(path)
        .env("_FUSE_COMMFD", their_fd.to_string())
        .stdin(Stdio::null());
    // SAFETY: only fcntl, which is async-signal-safe, runs in the child:
    // the helper must inherit its end of the socket.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(their_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {FUSERMOUNT}: {}", strerror(&e)),
        )
    })?;
    drop(theirs);
    if !status.success() {
        return Err(io::Error::other(format!("{FUSERMOUNT} failed ({status})")));
    }
    let fd = recv_fd(&ours)?;
    // The helper's descriptor is blocking; our queues poll.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok(fd)
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn recv_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, suitably aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; zero is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_RIGHTS
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Err(io::Error::other(format!(
        "{FUSERMOUNT} sent no file descriptor"
    )))
}

/// A new `/dev/fuse` descriptor attached to the same connection: the
/// kernel then lets several readers process requests in parallel, each
/// answering the requests it read.
pub fn clone_fd(session: &OwnedFd) -> io::Result<OwnedFd> {
    let fd = open_dev()?;
    let src: u32 = session.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 from a live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FUSE_DEV_IOC_CLONE, &src) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(br"/tmp/a\040b"), b"/tmp/a b");
        assert_eq!(unescape(br"/x\\y"), br"/x\\y");
        assert_eq!(unescape(br"/end\04"), br"/end\04");
        assert!(is_mount_point(Path::new("/")));
    }

    #[test]
    fn mountpoint_errors_are_qsd_texts() {
        assert_eq!(
            check_mountpoint("/nonexistent/x"),
            Err("Failed to stat '/nonexistent/x': No such file or directory".into())
        );
        assert_eq!(
            check_mountpoint("/"),
            Err("'/' is not a regular file".into())
        );
    }
}
