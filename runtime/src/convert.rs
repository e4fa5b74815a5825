//! Generated QAPI types to the block layer's and exports' plain options.

use qmp_types as q;
use storage_block::{
    Aio, BlockdevOptions, BlockdevRef, CacheOptions, DetectZeroes, Discard, DriverOptions,
    FileOptions, NullOptions, OnOffAuto, RawOptions,
};
#[cfg(feature = "nbd")]
use storage_exports::nbd::NbdListen;

/// A QAPI `int` that QEMU reads as a size: negative values are refused
/// with the text QEMU's size parser has (qsd itself aborts on them).
fn size(v: Option<i64>, name: &str) -> Result<Option<u64>, String> {
    v.map(|s| {
        u64::try_from(s).map_err(|_| format!("Value '{s}' is out of range for parameter '{name}'"))
    })
    .transpose()
}

/// The block layer's options; fails on a value the block layer cannot
/// represent (a negative size or offset).
pub fn blockdev(o: &q::BlockdevOptions) -> Result<BlockdevOptions, String> {
    let driver = match &o.branch {
        q::BlockdevOptionsBranch::File(f) => DriverOptions::File(file(f)),
        q::BlockdevOptionsBranch::Raw(r) => DriverOptions::Raw(RawOptions {
            file: blockdev_ref(&r.file)?,
            offset: size(r.offset, "offset")?,
            size: size(r.size, "size")?,
        }),
        q::BlockdevOptionsBranch::NullCo(n) => DriverOptions::NullCo(null(n)?),
        q::BlockdevOptionsBranch::NullAio(n) => DriverOptions::NullAio(null(n)?),
    };
    Ok(BlockdevOptions {
        node_name: o.node_name.clone(),
        read_only: o.read_only,
        auto_read_only: o.auto_read_only,
        force_share: o.force_share,
        discard: o.discard.map(|d| match d {
            q::BlockdevDiscardOptions::Ignore => Discard::Ignore,
            q::BlockdevDiscardOptions::Unmap => Discard::Unmap,
        }),
        cache: CacheOptions {
            direct: o.cache.as_ref().and_then(|c| c.direct),
            no_flush: o.cache.as_ref().and_then(|c| c.no_flush),
        },
        detect_zeroes: o.detect_zeroes.map(|d| match d {
            q::BlockdevDetectZeroesOptions::Off => DetectZeroes::Off,
            q::BlockdevDetectZeroesOptions::On => DetectZeroes::On,
            q::BlockdevDetectZeroesOptions::Unmap => DetectZeroes::Unmap,
        }),
        driver,
    })
}

fn blockdev_ref(r: &q::BlockdevRef) -> Result<BlockdevRef, String> {
    Ok(match r {
        q::BlockdevRef::Definition(d) => BlockdevRef::Definition(Box::new(blockdev(d)?)),
        q::BlockdevRef::Reference(name) => BlockdevRef::Reference(name.clone()),
    })
}

fn file(f: &q::BlockdevOptionsFile) -> FileOptions {
    let mut opts = FileOptions::new(&f.filename);
    opts.locking = match f.locking {
        Some(q::OnOffAuto::On) => OnOffAuto::On,
        Some(q::OnOffAuto::Off) => OnOffAuto::Off,
        Some(q::OnOffAuto::Auto) | None => OnOffAuto::Auto,
    };
    opts.aio = match f.aio {
        Some(q::BlockdevAioOptions::Native) => Aio::Native,
        #[cfg(all(target_os = "linux", feature = "io-uring"))]
        Some(q::BlockdevAioOptions::IoUring) => Aio::IoUring,
        _ => Aio::Threads,
    };
    opts.aio_max_batch = f.aio_max_batch;
    opts.drop_cache = f.drop_cache;
    opts
}

fn null(n: &q::BlockdevOptionsNull) -> Result<NullOptions, String> {
    Ok(NullOptions {
        size: size(n.size, "size")?,
        latency_ns: n.latency_ns,
        read_zeroes: n.read_zeroes,
    })
}

/// A QMP/CLI socket address to where the NBD server listens.
#[cfg(feature = "nbd")]
pub fn nbd_listen(addr: &q::SocketAddress) -> Result<NbdListen, String> {
    match &addr.branch {
        q::SocketAddressBranch::Inet(i) => Ok(NbdListen::Tcp {
            host: i.host.clone(),
            port: i.port.clone(),
            ipv4: i.ipv4,
            ipv6: i.ipv6,
        }),
        q::SocketAddressBranch::Unix(u) => Ok(NbdListen::Unix(u.path.clone().into())),
        q::SocketAddressBranch::Vsock(_) => {
            Err("vsock addresses are not supported by this build".into())
        }
        // A number is an inherited descriptor (QEMU's monitor_fd_param).
        q::SocketAddressBranch::Fd(f) => crate::cli::parse_fd(&f.str).map(NbdListen::Fd),
    }
}

/// The legacy (`nbd-server-start`) form of a socket address.
#[cfg(feature = "nbd")]
pub fn socket_address(addr: q::SocketAddressLegacy) -> q::SocketAddress {
    let branch = match addr.branch {
        q::SocketAddressLegacyBranch::Inet(w) => q::SocketAddressBranch::Inet(w.data),
        q::SocketAddressLegacyBranch::Unix(w) => q::SocketAddressBranch::Unix(w.data),
        q::SocketAddressLegacyBranch::Vsock(w) => q::SocketAddressBranch::Vsock(w.data),
        q::SocketAddressLegacyBranch::Fd(w) => q::SocketAddressBranch::Fd(w.data),
    };
    q::SocketAddress { branch }
}
