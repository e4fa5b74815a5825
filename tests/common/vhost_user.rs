//! A small vhost-user front end for the tests: raw messages on the unix
//! socket, guest memory in a memfd shared with the back end, one split
//! virtqueue laid out by hand, kick and call eventfds. It speaks to qsd
//! and to ours alike, so the same steps can be compared.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::TIMEOUT;

// Front-end requests.
pub const GET_FEATURES: u32 = 1;
pub const SET_FEATURES: u32 = 2;
pub const SET_OWNER: u32 = 3;
pub const SET_MEM_TABLE: u32 = 5;
pub const SET_VRING_NUM: u32 = 8;
pub const SET_VRING_ADDR: u32 = 9;
pub const SET_VRING_BASE: u32 = 10;
pub const GET_VRING_BASE: u32 = 11;
pub const SET_VRING_KICK: u32 = 12;
pub const SET_VRING_CALL: u32 = 13;
pub const GET_PROTOCOL_FEATURES: u32 = 15;
pub const SET_PROTOCOL_FEATURES: u32 = 16;
pub const GET_QUEUE_NUM: u32 = 17;
pub const SET_VRING_ENABLE: u32 = 18;
pub const SET_BACKEND_REQ_FD: u32 = 21;
pub const GET_CONFIG: u32 = 24;
pub const SET_CONFIG: u32 = 25;
pub const GET_MAX_MEM_SLOTS: u32 = 36;

pub const FLAG_VERSION: u32 = 0x1;
pub const FLAG_REPLY: u32 = 0x4;
pub const FLAG_NEED_REPLY: u32 = 0x8;

pub const PROTOCOL_F_MQ: u64 = 1 << 0;
pub const PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;
pub const PROTOCOL_F_BACKEND_REQ: u64 = 1 << 5;
pub const PROTOCOL_F_CONFIG: u64 = 1 << 9;

pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_PROTOCOL_FEATURES: u64 = 1 << 30;
pub const F_LOG_ALL: u64 = 1 << 26;

// virtio-blk request types and statuses.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

/// Guest memory: one memfd region at guest address 0.
pub const MEM_SIZE: usize = 8 << 20;
/// Where the ring lives in guest memory, and its size.
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x3000;
const USED: u64 = 0x4000;
pub const QUEUE_SIZE: u16 = 128;
/// Request buffers start here.
pub const DATA: u64 = 0x10000;

/// A reply: its header fields and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub request: u32,
    pub flags: u32,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn u64(&self) -> u64 {
        let b: [u8; 8] = self.payload.as_slice().try_into().expect("u64 payload");
        u64::from_le_bytes(b)
    }
}

fn check(r: libc::c_int, what: &str) -> libc::c_int {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
    r
}

pub fn eventfd() -> OwnedFd {
    // SAFETY: plain eventfd creation, owned at once.
    unsafe { OwnedFd::from_raw_fd(check(libc::eventfd(0, libc::EFD_CLOEXEC), "eventfd")) }
}

/// Guest memory shared with the back end.
pub struct GuestMem {
    pub fd: OwnedFd,
    ptr: *mut u8,
}

// The mapping is plain shared memory; the tests use it from one thread
// at a time.
unsafe impl Send for GuestMem {}

impl GuestMem {
    pub fn new() -> GuestMem {
        // SAFETY: memfd_create with a static name, owned at once.
        let fd = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::memfd_create(c"guest".as_ptr(), libc::MFD_CLOEXEC),
                "memfd_create",
            ))
        };
        // SAFETY: sizing our own memfd.
        check(
            unsafe { libc::ftruncate(fd.as_raw_fd(), MEM_SIZE as libc::off_t) },
            "ftruncate",
        );
        // SAFETY: a fresh shared mapping of the whole memfd.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap");
        GuestMem {
            fd,
            ptr: ptr.cast(),
        }
    }

    /// The front end's address of guest address 0 (vring addresses are
    /// given in it).
    pub fn user_addr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn write(&self, gpa: u64, data: &[u8]) {
        assert!(gpa as usize + data.len() <= MEM_SIZE);
        // SAFETY: inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(gpa as usize), data.len())
        };
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        assert!(gpa as usize + len <= MEM_SIZE);
        let mut v = vec![0u8; len];
        // SAFETY: inside the mapping (checked above); the back end may
        // write concurrently, which only affects the bytes read.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(gpa as usize), v.as_mut_ptr(), len) };
        v
    }

    pub fn u16(&self, gpa: u64) -> u16 {
        let b = self.read(gpa, 2);
        u16::from_le_bytes([b[0], b[1]])
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), MEM_SIZE) };
    }
}

/// One descriptor of a chain: guest address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// What a completed request gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub used_len: u32,
    pub status: u8,
    /// The device-writable data buffers (not the status byte).
    pub data: Vec<u8>,
}

/// A front-end connection.
pub struct Front {
    pub sock: UnixStream,
    pub mem: GuestMem,
    pub kick: OwnedFd,
    pub call: OwnedFd,
    /// Our end of the backend channel, if we set one up.
    pub backend_chan: Option<UnixStream>,
    reply_ack: bool,
    avail_idx: u16,
    used_seen: u16,
}

impl Front {
    /// Connects (waiting while the daemon has not started listening).
    pub fn connect(path: &str) -> Front {
        let sock = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path}: {e}"));
        sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Front {
            sock,
            mem: GuestMem::new(),
            kick: eventfd(),
            call: eventfd(),
            backend_chan: None,
            reply_ack: false,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Sends one message with descriptors; false when the back end
    /// closed the connection.
    pub fn send_fds(&mut self, request: u32, flags: u32, payload: &[u8], fds: &[RawFd]) -> bool {
        let mut bytes = Vec::with_capacity(12 + payload.len());
        bytes.extend_from_slice(&request.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        self.send_raw_fds(&bytes, fds)
    }

    /// Sends arbitrary bytes with descriptors on the first byte; false
    /// when the back end closed the connection.
    pub fn send_raw_fds(&mut self, bytes: &[u8], fds: &[RawFd]) -> bool {
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut _,
            iov_len: bytes.len(),
        };
        let mut cmsg = [0u64; 64];
        // SAFETY: a zeroed msghdr is valid; pointers are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let len = std::mem::size_of_val(fds) as u32;
            assert!(fds.len() <= 100, "at most 100 descriptors");
            // SAFETY: the control buffer (512 bytes) holds a header and
            // up to 100 descriptors.
            unsafe {
                msg.msg_control = cmsg.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(len) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
                std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
            }
        }
        // SAFETY: msg points at live buffers.
        let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)),
                "sendmsg: {e}"
            );
            return false;
        }
        assert_eq!(n as usize, bytes.len(), "short sendmsg");
        true
    }

    /// Sends a message that must go through.
    pub fn send(&mut self, request: u32, payload: &[u8]) {
        assert!(
            self.send_fds(request, FLAG_VERSION, payload, &[]),
            "connection closed before request {request}"
        );
    }

    /// Reads one reply; `None` when the back end closed the connection
    /// (or sent a partial message) instead.
    pub fn recv(&mut self) -> Option<Reply> {
        let mut h = [0u8; 12];
        self.sock.read_exact(&mut h).ok()?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut payload = vec![0u8; word(8) as usize];
        self.sock.read_exact(&mut payload).ok()?;
        Some(Reply {
            request: word(0),
            flags: word(4),
            payload,
        })
    }

    /// Whether the back end closed the connection (within the timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.sock.read(&mut b), Ok(0))
            || matches!(self.sock.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }

    /// Sends a request that has a reply and returns it.
    pub fn call(&mut self, request: u32, payload: &[u8]) -> Reply {
        self.send(request, payload);
        let r = self
            .recv()
            .unwrap_or_else(|| panic!("no reply to request {request}"));
        assert_eq!(r.request, request, "reply to the request sent");
        r
    }

    /// Sends a request without a reply of its own; with REPLY_ACK, asks
    /// for the acknowledgement and returns its status (0 is success).
    pub fn set(&mut self, request: u32, payload: &[u8], fds: &[RawFd]) -> Option<u64> {
        let flags = FLAG_VERSION | if self.reply_ack { FLAG_NEED_REPLY } else { 0 };
        if !self.send_fds(request, flags, payload, fds) {
            return None;
        }
        if !self.reply_ack {
            return None;
        }
        let r = self.recv()?;
        assert_eq!(r.request, request, "ack of the request sent");
        Some(r.u64())
    }

    pub fn get_u64(&mut self, request: u32) -> u64 {
        self.call(request, &[]).u64()
    }

    /// GET_CONFIG of `size` bytes at `offset`: the config bytes, or
    /// `None` for an error reply (of either form: no payload, or a
    /// header with size 0).
    pub fn get_config(&mut self, offset: u32, size: u32) -> Option<Vec<u8>> {
        let mut p = Vec::new();
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.resize(12 + size as usize, 0);
        let r = self.call(GET_CONFIG, &p);
        if r.payload.len() < 12 {
            return None;
        }
        let got = u32::from_le_bytes([r.payload[4], r.payload[5], r.payload[6], r.payload[7]]);
        if got == 0 {
            return None;
        }
        Some(r.payload[12..].to_vec())
    }

    /// The first steps of every front end: owner, features (all offered
    /// but EVENT_IDX and LOG_ALL, unless asked for), protocol features
    /// (`protocol` & offered). Returns (features, protocol features)
    /// offered.
    pub fn negotiate(&mut self, protocol: u64, event_idx: bool) -> (u64, u64) {
        self.send(SET_OWNER, &[]);
        let features = self.get_u64(GET_FEATURES);
        let offered_protocol = self.get_u64(GET_PROTOCOL_FEATURES);
        let acked = offered_protocol & protocol;
        self.send(SET_PROTOCOL_FEATURES, &acked.to_le_bytes());
        self.reply_ack = acked & PROTOCOL_F_REPLY_ACK != 0;
        let mut want = features & !F_LOG_ALL;
        if !event_idx {
            want &= !F_EVENT_IDX;
        }
        assert_eq!(
            self.set(SET_FEATURES, &want.to_le_bytes(), &[])
                .unwrap_or(0),
            0
        );
        (features, offered_protocol)
    }

    /// SET_MEM_TABLE with our one region; the ack status with REPLY_ACK.
    pub fn set_mem_table(&mut self) -> Option<u64> {
        let regions = [(0u64, MEM_SIZE as u64, self.mem.user_addr(), 0u64)];
        let fd = self.mem.fd.as_raw_fd();
        self.set_mem_table_raw(&regions, &[fd])
    }

    /// SET_MEM_TABLE with any regions (guest address, size, user
    /// address, mmap offset) and descriptors.
    pub fn set_mem_table_raw(
        &mut self,
        regions: &[(u64, u64, u64, u64)],
        fds: &[RawFd],
    ) -> Option<u64> {
        let mut p = Vec::new();
        p.extend_from_slice(&(regions.len() as u32).to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        for (gpa, size, uaddr, off) in regions {
            for v in [gpa, size, uaddr, off] {
                p.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.set(SET_MEM_TABLE, &p, fds)
    }

    /// Sets up queue `index` at our ring addresses (given as the front
    /// end's addresses, plus `skew` to point them elsewhere) and enables
    /// it. Returns every ack status.
    pub fn setup_queue(&mut self, index: u32, skew: u64) -> Vec<Option<u64>> {
        let (kick, call) = (self.kick.as_raw_fd(), self.call.as_raw_fd());
        self.setup_queue_with(index, skew, kick, call)
    }

    /// [`Front::setup_queue`] with other eventfds (one pair per queue,
    /// as a real front end has).
    pub fn setup_queue_with(
        &mut self,
        index: u32,
        skew: u64,
        kick: RawFd,
        call: RawFd,
    ) -> Vec<Option<u64>> {
        let mut acks = Vec::new();
        let pair = |a: u32, b: u32| {
            let mut p = a.to_le_bytes().to_vec();
            p.extend_from_slice(&b.to_le_bytes());
            p
        };
        acks.push(self.set(SET_VRING_NUM, &pair(index, u32::from(QUEUE_SIZE)), &[]));
        acks.push(self.set(SET_VRING_BASE, &pair(index, 0), &[]));
        let base = self.mem.user_addr().wrapping_add(skew);
        let mut p = pair(index, 0);
        for a in [DESC, USED, AVAIL] {
            p.extend_from_slice(&base.wrapping_add(a).to_le_bytes());
        }
        p.extend_from_slice(&0u64.to_le_bytes());
        acks.push(self.set(SET_VRING_ADDR, &p, &[]));
        acks.push(self.set(SET_VRING_CALL, &u64::from(index).to_le_bytes(), &[call]));
        acks.push(self.set(SET_VRING_KICK, &u64::from(index).to_le_bytes(), &[kick]));
        acks.push(self.set(SET_VRING_ENABLE, &pair(index, 1), &[]));
        acks
    }

    /// A full setup for I/O on queue 0: negotiate (REPLY_ACK, CONFIG,
    /// MQ), memory, queue 0.
    pub fn setup(&mut self) {
        self.setup_with(PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG | PROTOCOL_F_MQ);
    }

    /// [`Front::setup`] acking `protocol` (of what is offered).
    pub fn setup_with(&mut self, protocol: u64) {
        self.negotiate(protocol, false);
        // Without REPLY_ACK there is no status to check.
        let want = self.reply_ack.then_some(0);
        assert_eq!(self.set_mem_table(), want, "SET_MEM_TABLE acked");
        for a in self.setup_queue(0, 0) {
            assert_eq!(a, want, "queue setup acked");
        }
    }

    /// Gives the back end a backend channel; returns our end.
    pub fn set_backend_channel(&mut self) -> Option<u64> {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let fd = theirs.as_raw_fd();
        let ack = self.set(SET_BACKEND_REQ_FD, &[], &[fd]);
        self.backend_chan = Some(ours);
        ack
    }

    /// Puts a chain of descriptors on the ring (descriptors from slot
    /// `first`) and kicks; returns the head.
    pub fn submit_at(&mut self, first: u16, bufs: &[Buf]) -> u16 {
        for (i, b) in bufs.iter().enumerate() {
            let slot = first + i as u16;
            let next = if i + 1 < bufs.len() { slot + 1 } else { 0 };
            let mut flags = 0u16;
            if i + 1 < bufs.len() {
                flags |= 1; // NEXT
            }
            if b.write {
                flags |= 2; // WRITE
            }
            self.write_desc(slot, b.addr, b.len, flags, next);
        }
        self.publish(first)
    }

    /// Writes descriptor `slot`.
    pub fn write_desc(&mut self, slot: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.mem.write(DESC + u64::from(slot) * 16, &d);
    }

    /// Makes `head` available and kicks.
    pub fn publish(&mut self, head: u16) -> u16 {
        // With EVENT_IDX: a call for the very next used entry, please.
        self.mem.write(
            AVAIL + 4 + 2 * u64::from(QUEUE_SIZE),
            &self.used_seen.to_le_bytes(),
        );
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        self.mem.write(AVAIL + 4 + slot * 2, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.mem.write(AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.kick();
        head
    }

    /// Sets the available index as is (for bad-input tests).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.mem.write(AVAIL + 2, &idx.to_le_bytes());
    }

    pub fn kick(&self) {
        let one = 1u64.to_le_bytes();
        // SAFETY: an 8-byte write to our eventfd.
        let n = unsafe { libc::write(self.kick.as_raw_fd(), one.as_ptr().cast(), 8) };
        assert_eq!(n, 8, "kick");
    }

    /// Waits until the used ring has a new entry (at most `wait`):
    /// (head, used length).
    pub fn wait_used_within(&mut self, wait: Duration) -> Option<(u16, u32)> {
        let deadline = Instant::now() + wait;
        loop {
            let used = self.mem.u16(USED + 2);
            if used != self.used_seen {
                let slot = u64::from(self.used_seen % QUEUE_SIZE);
                let e = self.mem.read(USED + 4 + slot * 8, 8);
                self.used_seen = self.used_seen.wrapping_add(1);
                let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                return Some((id as u16, len));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // The call eventfd wakes us; the used index is the truth.
            let mut p = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on our eventfd.
            let r = unsafe { libc::poll(&mut p, 1, left.as_millis().min(100) as i32) };
            if r > 0 {
                let mut v = [0u8; 8];
                // SAFETY: an 8-byte read from our eventfd.
                unsafe { libc::read(self.call.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
            }
        }
    }

    pub fn wait_used(&mut self) -> (u16, u32) {
        self.wait_used_within(TIMEOUT)
            .expect("request never completed")
    }

    /// One virtio-blk request: header, `out` data (driver to device),
    /// `inlen` bytes of device-writable data, status byte. Data lives at
    /// DATA onwards.
    pub fn request(&mut self, ty: u32, sector: u64, out: &[u8], inlen: u32) -> Done {
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&ty.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&sector.to_le_bytes());
        let hdr_at = DATA;
        let out_at = DATA + 0x1000;
        let in_at = out_at + out.len().next_multiple_of(0x1000) as u64;
        let status_at = in_at + u64::from(inlen).next_multiple_of(0x1000);
        self.mem.write(hdr_at, &hdr);
        self.mem.write(out_at, out);
        // Poison what the device should fill.
        self.mem.write(in_at, &vec![0xa5; inlen as usize]);
        self.mem.write(status_at, &[0xee]);
        let mut bufs = vec![Buf {
            addr: hdr_at,
            len: 16,
            write: false,
        }];
        if !out.is_empty() {
            bufs.push(Buf {
                addr: out_at,
                len: out.len() as u32,
                write: false,
            });
        }
        if inlen > 0 {
            bufs.push(Buf {
                addr: in_at,
                len: inlen,
                write: true,
            });
        }
        bufs.push(Buf {
            addr: status_at,
            len: 1,
            write: true,
        });
        let head = self.submit_at(0, &bufs);
        let (id, used_len) = self.wait_used();
        assert_eq!(id, head, "the used entry is our chain");
        Done {
            used_len,
            status: self.mem.read(status_at, 1)[0],
            data: self.mem.read(in_at, inlen as usize),
        }
    }

    /// A discard or write-zeroes segment: sector, sectors, flags.
    pub fn segment(sector: u64, sectors: u32, flags: u32) -> Vec<u8> {
        let mut s = sector.to_le_bytes().to_vec();
        s.extend_from_slice(&sectors.to_le_bytes());
        s.extend_from_slice(&flags.to_le_bytes());
        s
    }

    /// Reads a message the back end sent on the backend channel:
    /// (request, flags, size).
    pub fn backend_message(&mut self) -> Option<(u32, u32, u32)> {
        let chan = self.backend_chan.as_mut()?;
        let mut h = [0u8; 12];
        chan.read_exact(&mut h).ok()?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some((word(0), word(4), word(8)))
    }

    /// Acknowledges a backend-channel message with status 0.
    pub fn backend_ack(&mut self, request: u32) {
        let chan = self.backend_chan.as_mut().expect("backend channel");
        let mut r = request.to_le_bytes().to_vec();
        r.extend_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        r.extend_from_slice(&8u32.to_le_bytes());
        r.extend_from_slice(&0u64.to_le_bytes());
        chan.write_all(&r).expect("ack");
    }
}

/// The capacity field (sectors) of a config space.
pub fn capacity(config: &[u8]) -> u64 {
    u64::from_le_bytes(config[..8].try_into().expect("capacity"))
}
