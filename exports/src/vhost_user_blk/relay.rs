//! The control-channel relay between a front end and vhost-user-backend.
//!
//! We accept the front end's connection ourselves and pass its messages,
//! whole and with their descriptors, to the library over a private
//! socket (and its replies back). The relay keeps what the library gives
//! no access to: a duplicate of the front end's backend channel
//! (`SET_BACKEND_REQ_FD`), so that a resize can send the config-change
//! message on that channel.
//!
//! Only control messages pass here; requests travel through shared
//! memory and eventfds that go straight to the library's worker.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use super::wire::{self, HEADER_LEN, Header, MAX_FDS, MAX_PAYLOAD};

/// Why a relay or a config-change message ended in error.
#[derive(Debug)]
pub enum RelayError {
    Io(io::Error),
    /// A header announced a payload larger than any message.
    TooBig(u32),
    /// More descriptors than a message may carry (the kernel dropped
    /// some).
    TooManyFds,
    /// The peer closed in the middle of a message.
    Truncated,
    /// A memory region reaches past the end of the file behind it:
    /// touching it would kill the daemon with SIGBUS.
    PastEof {
        size: u64,
        mmap_offset: u64,
        file_size: u64,
    },
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::Io(e) => write!(f, "{e}"),
            RelayError::TooBig(n) => write!(f, "message of {n} bytes is too big"),
            RelayError::TooManyFds => write!(f, "too many file descriptors in a message"),
            RelayError::Truncated => write!(f, "connection closed within a message"),
            RelayError::PastEof {
                size,
                mmap_offset,
                file_size,
            } => write!(
                f,
                "memory region of {size} bytes at offset {mmap_offset} of a {file_size}-byte file"
            ),
        }
    }
}

impl std::error::Error for RelayError {}

impl From<io::Error> for RelayError {
    fn from(e: io::Error) -> Self {
        RelayError::Io(e)
    }
}

/// The front end's backend channel, as the relay saw it set up.
#[derive(Debug, Default)]
pub struct BackendChannel {
    /// Our duplicate of the descriptor of `SET_BACKEND_REQ_FD`.
    pub fd: Option<OwnedFd>,
}

/// One message: header and payload, and its descriptors.
struct Msg {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Msg {
    fn header(&self) -> Header {
        let mut h = [0; HEADER_LEN];
        h.copy_from_slice(&self.bytes[..HEADER_LEN]);
        Header::parse(&h)
    }
}

/// Reads into `buf` with recvmsg, collecting descriptors; 0 is EOF.
fn recv_some(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<usize, RelayError> {
    // Room for MAX_FDS descriptors of ancillary data, 8-byte aligned.
    let mut cmsg = [0u64; 40];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    let n = loop {
        // SAFETY: msg points at live buffers of the sizes it says.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    };
    // SAFETY: walking the control buffer recvmsg filled, with the libc
    // macros that bound every step by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    // Each received descriptor is new and ours to own.
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > MAX_FDS {
        return Err(RelayError::TooManyFds);
    }
    Ok(n)
}

/// Fills `buf` completely; `Ok(false)` for EOF before the first byte.
fn recv_exact(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<bool, RelayError> {
    let mut got = 0;
    while got < buf.len() {
        let n = recv_some(fd, &mut buf[got..], fds)?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(RelayError::Truncated)
            };
        }
        got += n;
    }
    Ok(true)
}

/// Reads one whole message; `None` when the peer closed between messages.
fn read_msg(fd: RawFd) -> Result<Option<Msg>, RelayError> {
    let mut fds = Vec::new();
    let mut head = [0u8; HEADER_LEN];
    if !recv_exact(fd, &mut head, &mut fds)? {
        return Ok(None);
    }
    let h = Header::parse(&head);
    let size = h.size as usize;
    if size > MAX_PAYLOAD {
        return Err(RelayError::TooBig(h.size));
    }
    let mut bytes = vec![0u8; HEADER_LEN + size];
    bytes[..HEADER_LEN].copy_from_slice(&head);
    if size > 0 && !recv_exact(fd, &mut bytes[HEADER_LEN..], &mut fds)? {
        return Err(RelayError::Truncated);
    }
    Ok(Some(Msg { bytes, fds }))
}

/// Sends `bytes`, with `fds` attached to the first byte.
fn send_all(fd: RawFd, bytes: &[u8], fds: &[OwnedFd]) -> Result<(), RelayError> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut sent = 0;
    let mut cmsg = [0u64; 40];
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut _,
            iov_len: rest.len(),
        };
        // SAFETY: a zeroed msghdr is valid; its pointers are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 && !raw.is_empty() {
            let payload = std::mem::size_of_val(raw.as_slice()) as u32;
            // SAFETY: CMSG_SPACE is a pure size computation; the buffer
            // holds MAX_FDS descriptors and read_msg never keeps more.
            let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: the control buffer is `space` bytes, enough for one
            // header and the descriptors.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
                std::ptr::copy_nonoverlapping(
                    raw.as_ptr(),
                    libc::CMSG_DATA(c).cast::<RawFd>(),
                    raw.len(),
                );
            }
        }
        // SAFETY: msg points at live buffers of the sizes it says.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        sent += n as usize;
    }
    Ok(())
}

fn lock(m: &Mutex<BackendChannel>) -> std::sync::MutexGuard<'_, BackendChannel> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a front-end message and remembers what it tells about the
/// backend channel.
fn snoop(m: &Msg, channel: &Mutex<BackendChannel>) -> Result<(), RelayError> {
    let h = m.header();
    if h.request == wire::SET_BACKEND_REQ_FD
        && let Some(fd) = m.fds.first()
    {
        lock(channel).fd = fd.try_clone().ok();
    }
    if let Some(regions) = wire::mem_regions(h.request, &m.bytes[HEADER_LEN..]) {
        for (r, fd) in regions.iter().zip(&m.fds) {
            check_region(r, fd)?;
        }
    }
    Ok(())
}

/// A region of a regular file (a memfd, a hugetlbfs or tmpfs file) must
/// lie inside the file: the library would map it anyway, and the first
/// access past the end would be a SIGBUS. (A front end that shrinks the
/// file afterwards is not caught here.)
fn check_region(r: &wire::FileRange, fd: &OwnedFd) -> Result<(), RelayError> {
    // SAFETY: a zeroed stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        // Not ours to judge: the library reports it.
        return Ok(());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(());
    }
    let file_size = st.st_size as u64;
    match r.mmap_offset.checked_add(r.size) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(RelayError::PastEof {
            size: r.size,
            mmap_offset: r.mmap_offset,
            file_size,
        }),
    }
}

/// Relays messages both ways until either side closes or breaks the
/// protocol. `Ok` is a clean close between messages.
pub fn relay(
    front: &UnixStream,
    back: &UnixStream,
    channel: &Mutex<BackendChannel>,
) -> Result<(), RelayError> {
    let (f, b) = (front.as_raw_fd(), back.as_raw_fd());
    loop {
        let mut fds = [
            libc::pollfd {
                fd: f,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: b,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two descriptors we hold.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if fds[0].revents != 0 {
            let Some(m) = read_msg(f)? else {
                return Ok(());
            };
            snoop(&m, channel)?;
            send_all(b, &m.bytes, &m.fds)?;
        }
        if fds[1].revents != 0 {
            let Some(m) = read_msg(b)? else {
                return Ok(());
            };
            send_all(f, &m.bytes, &m.fds)?;
        }
    }
}

/// Sends the config-change message on a backend channel. qsd asks for
/// no acknowledgement, and neither do we: a front end that is slow to
/// read it does not hold up `block_resize`.
pub fn send_config_change(fd: &impl AsFd) -> Result<(), RelayError> {
    send_all(fd.as_fd().as_raw_fd(), &wire::config_change(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_pass_both_ways() {
        let (fe, front) = UnixStream::pair().expect("pair");
        let (back, be) = UnixStream::pair().expect("pair");
        let channel = Mutex::new(BackendChannel::default());
        std::thread::scope(|s| {
            let t = s.spawn(|| relay(&front, &back, &channel));
            // SET_PROTOCOL_FEATURES (16) with a payload, then a backend
            // channel.
            let mut m = wire::Header {
                request: 16,
                flags: 1,
                size: 8,
            }
            .bytes()
            .to_vec();
            m.extend_from_slice(&(1u64 << 3).to_le_bytes());
            send_all(fe.as_raw_fd(), &m, &[]).expect("send");
            let (chan_ours, chan_theirs) = UnixStream::pair().expect("pair");
            let h = wire::Header {
                request: wire::SET_BACKEND_REQ_FD,
                flags: 1,
                size: 0,
            }
            .bytes();
            send_all(fe.as_raw_fd(), &h, &[OwnedFd::from(chan_theirs)]).expect("send");
            let got = read_msg(be.as_raw_fd()).expect("read").expect("message");
            assert_eq!(got.bytes, m);
            let got = read_msg(be.as_raw_fd()).expect("read").expect("message");
            assert_eq!(got.bytes, h);
            assert_eq!(got.fds.len(), 1, "the descriptor passed through");
            // A reply goes back.
            let r = wire::Header {
                request: 1,
                flags: 5,
                size: 0,
            }
            .bytes();
            send_all(be.as_raw_fd(), &r, &[]).expect("send");
            let got = read_msg(fe.as_raw_fd()).expect("read").expect("message");
            assert_eq!(got.bytes, r);
            assert!(
                lock(&channel).fd.is_some(),
                "kept a duplicate of the backend channel"
            );
            // The config change reaches the front end's end of the channel.
            {
                let c = lock(&channel);
                let fd = c.fd.as_ref().expect("channel");
                send_config_change(fd).expect("sent");
            }
            let mut b = [0u8; HEADER_LEN];
            let mut fds = Vec::new();
            recv_exact(chan_ours.as_raw_fd(), &mut b, &mut fds).expect("recv");
            assert_eq!(b, wire::config_change());
            // A message too big to be one ends the relay in error.
            let big = wire::Header {
                request: 1,
                flags: 1,
                size: 1 << 20,
            }
            .bytes();
            send_all(fe.as_raw_fd(), &big, &[]).expect("send");
            assert!(matches!(
                t.join().expect("thread"),
                Err(RelayError::TooBig(_))
            ));
        });
    }
}
