//! Process lifecycle: pid file, daemonizing, termination signals.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A locked pid file, removed when dropped (if it is still ours).
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    file: File,
}

impl Pidfile {
    /// Creates and locks `path`, then writes our pid, as QEMU does: a file
    /// locked by a running instance is refused. Errors are worded as in
    /// QEMU's `qemu_write_pidfile()`.
    pub fn create(path: &Path) -> Result<Pidfile, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let reason = storage_block::strerror;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("Could not create '{}': {}", path.display(), reason(&e)))?;
        let lock = libc::flock {
            l_type: libc::F_WRLCK as _,
            l_whence: libc::SEEK_SET as _,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        // SAFETY: plain fcntl on a descriptor we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!("Cannot lock pid file: {}", reason(&e)));
        }
        file.set_len(0)
            .map_err(|e| format!("Failed to truncate pid file: {}", reason(&e)))?;
        writeln!(file, "{}", std::process::id())
            .map_err(|e| format!("Failed to write pid file: {}", reason(&e)))?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only remove the file if it is still the one we locked.
        let ours = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The child side of `--daemonize`: reports startup success or failure to
/// the waiting parent.
pub struct DaemonChild {
    pipe: Option<File>,
}

impl DaemonChild {
    /// Startup finished: the parent exits 0; our stdio goes to /dev/null.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[0]);
            redirect_stdio();
        }
    }

    /// Startup failed: the parent exits 1 (the message was printed).
    pub fn failed(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[1]);
        }
    }
}

fn redirect_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Forks into the background. Must run before any thread is started. In
/// the parent this waits for the child's verdict and exits; it returns
/// only in the child.
pub fn daemonize() -> io::Result<DaemonChild> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors we then own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptors come from pipe(2) above.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (documented precondition).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(rd);
            // SAFETY: new session for the child.
            unsafe { libc::setsid() };
            Ok(DaemonChild {
                pipe: Some(File::from(wr)),
            })
        }
        _ => {
            drop(wr);
            let mut status = [1u8];
            let ok = File::from(rd).read_exact(&mut status).is_ok() && status[0] == 0;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

/// Resolves when SIGTERM, SIGINT or SIGHUP arrives. The handlers are
/// installed when this is called (inside the runtime), not when the
/// future is first polled, so that a signal sent as soon as startup is
/// reported (pid file, `--daemonize`) is not lost to the default action.
pub fn termination_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
    }
}
