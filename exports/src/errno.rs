//! The errno an I/O error stands for, shared by the exports: FUSE sends
//! it as is, NBD maps it further to its few `NBD_E*` values.

use std::io;

/// The positive errno of `e`: its OS error when it has one, otherwise
/// one picked from its kind (errors the block layer builds by hand, such
/// as a read-only refusal, carry only a kind), EIO for the rest.
pub fn of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::PermissionDenied => libc::EPERM,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::Unsupported => libc::ENOTSUP,
        io::ErrorKind::OutOfMemory => libc::ENOMEM,
        _ => libc::EIO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_pass_through_and_kinds_map() {
        assert_eq!(
            of(&io::Error::from_raw_os_error(libc::ENOSPC)),
            libc::ENOSPC
        );
        assert_eq!(of(&io::Error::from_raw_os_error(libc::EROFS)), libc::EROFS);
        let kind = |k: io::ErrorKind| of(&io::Error::new(k, "x"));
        assert_eq!(kind(io::ErrorKind::PermissionDenied), libc::EPERM);
        assert_eq!(kind(io::ErrorKind::InvalidInput), libc::EINVAL);
        assert_eq!(kind(io::ErrorKind::Unsupported), libc::ENOTSUP);
        assert_eq!(kind(io::ErrorKind::OutOfMemory), libc::ENOMEM);
        assert_eq!(kind(io::ErrorKind::Other), libc::EIO);
        assert_eq!(of(&io::Error::other("Image is too big")), libc::EIO);
    }
}
