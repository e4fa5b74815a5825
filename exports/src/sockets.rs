//! Listening sockets as QEMU makes them, for the NBD server and the QMP
//! monitors: address resolution with QEMU's hints and messages, inet
//! listener options, and sockets inherited by descriptor number.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// An inherited listening socket, by family.
pub enum Inherited {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// Why an inherited descriptor cannot be taken over.
#[derive(Debug)]
pub enum InheritError {
    /// Not an open socket (QEMU's check and text).
    NotASocket(i32),
    /// Already owned in this process: taken over before, or one of the
    /// daemon's own descriptors (those are all close-on-exec).
    InUse(i32),
    /// The socket could not be set up (non-blocking, event loop).
    Setup(io::Error),
}

impl std::fmt::Display for InheritError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InheritError::NotASocket(fd) => write!(f, "File descriptor '{fd}' is not a socket"),
            InheritError::InUse(fd) => write!(
                f,
                "File descriptor '{fd}' is already in use: each inherited descriptor can be used once"
            ),
            InheritError::Setup(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InheritError {}

/// The message, for callers whose errors are plain texts.
impl From<InheritError> for String {
    fn from(e: InheritError) -> String {
        e.to_string()
    }
}

impl From<InheritError> for io::Error {
    fn from(e: InheritError) -> io::Error {
        let kind = match &e {
            InheritError::NotASocket(_) => io::ErrorKind::InvalidInput,
            InheritError::InUse(_) => io::ErrorKind::AddrInUse,
            InheritError::Setup(e) => e.kind(),
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Takes over listening socket `fd` (handed over on the command line);
/// it is closed when the listener is dropped. Must run in the runtime.
///
/// One descriptor, one owner: a descriptor that survived exec has
/// close-on-exec clear, while everything this process opens (std, tokio)
/// has it set. Taking a descriptor over sets the flag, so a second use of
/// the same number, or a number that is one of our own sockets, is refused
/// before anything owns (and would later close) it.
pub fn inherit_listener(fd: i32) -> Result<Inherited, InheritError> {
    // Serializes check-and-mark: two takers of one number race otherwise.
    static TAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _taking = TAKING.lock().unwrap_or_else(|e| e.into_inner());
    // Checked first: a descriptor that is not an open socket must not be
    // taken over (and later closed).
    let domain = socket_domain(fd).map_err(|_| InheritError::NotASocket(fd))?;
    // SAFETY: F_GETFD on a descriptor number only reads its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return Err(InheritError::InUse(fd));
    }
    // SAFETY: as above; also keeps the socket out of helpers we spawn.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(InheritError::Setup(io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is an open socket (getsockopt succeeded) that
    // came through exec and that nothing in this process took before (its
    // close-on-exec flag was clear, and is set now under the lock).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let made = if domain == libc::AF_UNIX {
        let std = std::os::unix::net::UnixListener::from(owned);
        std.set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(std))
            .map(Inherited::Unix)
    } else {
        let std = std::net::TcpListener::from(owned);
        std.set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std))
            .map(Inherited::Tcp)
    };
    made.map_err(InheritError::Setup)
}

/// The address family of a socket descriptor (fails when `fd` is not an
/// open socket).
pub fn socket_domain(fd: i32) -> io::Result<i32> {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(domain)
}

/// Listens on every address `host` resolves to (of the families left in),
/// as QEMU's listener does; fails only when none can be bound.
pub fn tcp_listeners(
    host: &str,
    port: &str,
    ipv4: Option<bool>,
    ipv6: Option<bool>,
) -> Result<Vec<tokio::net::TcpListener>, String> {
    let mut addrs = resolve(host, port, ipv4, ipv6)?;
    addrs.dedup();
    let mut listeners = Vec::new();
    let mut first_error = None;
    for addr in addrs {
        let bound = listen_tcp(addr, ipv4 == Some(false))
            .and_then(|l| tokio::net::TcpListener::from_std(l.into()));
        match bound {
            Ok(l) => listeners.push(l),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (listeners.is_empty(), first_error) {
        // QEMU goes on to the next port on EADDRINUSE, and words the end
        // of that search so.
        (true, Some(e)) if e.kind() == io::ErrorKind::AddrInUse => Err(format!(
            "Failed to find an available port: {}",
            storage_block::strerror(&e)
        )),
        (true, Some(e)) => Err(format!(
            "Failed to bind socket: {}",
            storage_block::strerror(&e)
        )),
        _ => Ok(listeners),
    }
}

/// A listening socket as QEMU makes one: `SO_REUSEADDR`, IPv6 sockets
/// dual-stack unless IPv4 is off, the system's maximum backlog.
pub fn listen_tcp(
    addr: std::net::SocketAddr,
    v6_only: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: plain socket creation; the descriptor is owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        ))?)
    };
    let set = |level, name, value: libc::c_int| {
        // SAFETY: an int option on our own socket.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if !addr.is_ipv4() {
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            libc::c_int::from(v6_only),
        )?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let bind = || {
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        })
    };
    if let Err(e) = bind() {
        // A dual-stack bind fails when the IPv4 side of the port is taken
        // (by this very server's 0.0.0.0 listener, say): QEMU then binds
        // IPv6 only, and so do we.
        if addr.is_ipv4() || v6_only || e.raw_os_error() != Some(libc::EADDRINUSE) {
            return Err(e);
        }
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        bind()?;
    }
    // SAFETY: listen on our bound socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })?;
    Ok(fd)
}

fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// getaddrinfo() with QEMU's hints (passive, stream, the family the
/// ipv4/ipv6 flags leave), errors worded as QEMU words them.
pub fn resolve(
    host: &str,
    port: &str,
    ipv4: Option<bool>,
    ipv6: Option<bool>,
) -> Result<Vec<std::net::SocketAddr>, String> {
    use std::ffi::{CStr, CString};
    let fail = |why: &str| format!("address resolution failed for {host}:{port}: {why}");
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let c_name = CString::new(name).map_err(|_| fail("Name or service not known"))?;
    let c_port = CString::new(port).map_err(|_| fail("Servname not supported for ai_socktype"))?;
    // SAFETY: a zeroed addrinfo is a valid "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_PASSIVE;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_family = match (ipv4, ipv6) {
        (Some(false), v6) if v6 != Some(false) => libc::AF_INET6,
        (v4, Some(false)) if v4 != Some(false) => libc::AF_INET,
        _ => libc::AF_UNSPEC,
    };
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and hints; the list is freed below.
    let rc = unsafe {
        libc::getaddrinfo(
            if name.is_empty() {
                std::ptr::null()
            } else {
                c_name.as_ptr()
            },
            c_port.as_ptr(),
            &hints,
            &mut list,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string.
        let why = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(fail(&why.to_string_lossy()));
    }
    let mut out = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getaddrinfo returned.
        let ai = unsafe { &*cur };
        let addr = match ai.ai_family {
            // SAFETY: the family says which sockaddr type ai_addr points to.
            libc::AF_INET => {
                let a = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                Some(std::net::SocketAddr::from((
                    u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above.
                let a = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                    a.sin6_addr.s6_addr.into(),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        };
        out.extend(addr);
        cur = ai.ai_next;
    }
    // SAFETY: the list came from getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(out)
}

/// Listens on unix socket `path` as QEMU does: whatever is at `path` is
/// unlinked first (a socket file left by a crash, but also a live socket
/// or a regular file: QEMU does not look), so a restart after a crash
/// works. Must run in the runtime.
pub fn unix_listener(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "Failed to unlink socket {}: {}",
                path.display(),
                storage_block::strerror(&e)
            ));
        }
    }
    tokio::net::UnixListener::bind(path).map_err(|e| {
        format!(
            "Failed to bind socket to {}: {}",
            path.display(),
            storage_block::strerror(&e)
        )
    })
}
