//! The NBD wire format: bytes as doc/proto.md spells them.
#![cfg(feature = "nbd")]

use storage_exports::nbd::codec::*;

#[test]
fn greeting_is_fixed_newstyle_without_zeroes() {
    let g = greeting();
    assert_eq!(&g[..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(g[16..], [0, 3]);
}

#[test]
fn option_headers() {
    let h = OptionHeader {
        option: OPT_GO,
        len: 12,
    };
    assert_eq!(OptionHeader::decode(&h.encode()), Ok(h));
    let mut bad = h.encode();
    bad[0] = b'X';
    assert_eq!(
        OptionHeader::decode(&bad).map_err(|e| e.0),
        Err("Bad magic received".to_string())
    );
    let big = OptionHeader {
        option: OPT_GO,
        len: MAX_BUFFER_SIZE + 1,
    };
    assert!(OptionHeader::decode(&big.encode()).is_err());
    let mut out = Vec::new();
    put_option_reply(&mut out, OPT_LIST, REP_ACK, b"");
    assert_eq!(
        out,
        [
            &REPLY_MAGIC.to_be_bytes()[..],
            &[0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0]
        ]
        .concat()
    );
}

#[test]
fn option_payloads() {
    let mut p = 4u32.to_be_bytes().to_vec();
    p.extend_from_slice(b"disk");
    p.extend_from_slice(&[0, 2, 0, 1, 0, 3]);
    let r = InfoRequest::decode(OPT_GO, &p).expect("valid");
    assert_eq!(r.name, "disk");
    assert!(r.want_name && r.want_block_size);
    assert_eq!(
        InfoRequest::decode(OPT_GO, &p[..7]),
        Err(OptInvalid("Inconsistent lengths in option go".into()))
    );
    p.push(0);
    assert_eq!(
        InfoRequest::decode(OPT_INFO, &p),
        Err(OptInvalid("option 'info' has unexpected length".into()))
    );
    let mut r = OptReader::new(OPT_GO, &[0, 0, 16, 1]);
    assert_eq!(
        r.name(),
        Err(OptInvalid("Invalid name length: 4097".into()))
    );
    let mut r = OptReader::new(OPT_GO, &[0, 0, 0, 2, b'a', 0]);
    assert!(r.name().is_err());
}

#[test]
fn requests_round_trip_and_check_magic() {
    let r = Request {
        flags: CMD_FLAG_FUA,
        ty: CMD_WRITE,
        cookie: 9,
        offset: 1 << 40,
        len: 4096,
    };
    assert_eq!(Request::decode(&r.encode(false)), Ok(r));
    let big = Request { len: 1 << 33, ..r };
    assert_eq!(Request::decode(&big.encode(true)), Ok(big));
    let mut b = r.encode(false);
    b[0] = 0;
    let e = Request::decode(&b).expect_err("bad magic");
    assert_eq!(e.req.map(|q| q.cookie), Some(9));
    assert!(Request::decode(&[0; 5]).expect_err("short").req.is_none());
}

#[test]
fn replies() {
    let req = Request {
        flags: 0,
        ty: CMD_READ,
        cookie: 5,
        offset: 512,
        len: 8,
    };
    let mut out = Vec::new();
    put_simple_reply(&mut out, EIO, 5);
    assert_eq!(
        ReplyHeader::decode(&out),
        Ok(ReplyHeader::Simple {
            error: EIO,
            cookie: 5
        })
    );
    out.clear();
    put_error_chunk(&mut out, false, &req, EPERM, "no");
    assert_eq!(
        ReplyHeader::decode(&out[..20]),
        Ok(ReplyHeader::Chunk {
            flags: REPLY_FLAG_DONE,
            ty: REPLY_TYPE_ERROR,
            cookie: 5,
            offset: 0,
            len: 8
        })
    );
    assert_eq!(out[20..], [0, 0, 0, 1, 0, 2, b'n', b'o']);
    out.clear();
    put_hole_chunk(&mut out, true, true, &req, 512, 8);
    assert_eq!(
        ReplyHeader::decode(&out[..32]),
        Ok(ReplyHeader::Chunk {
            flags: REPLY_FLAG_DONE,
            ty: REPLY_TYPE_OFFSET_HOLE,
            cookie: 5,
            offset: 512,
            len: 12
        })
    );
    out.clear();
    put_block_status_chunk(
        &mut out,
        false,
        true,
        &req,
        0,
        &[Extent {
            len: 8,
            flags: STATE_HOLE,
        }],
    );
    assert_eq!(out[20..], [0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1]);
}

#[test]
fn errno_mapping_is_qemus() {
    let e = |n| nbd_errno(&std::io::Error::from_raw_os_error(n));
    assert_eq!(e(libc::EROFS), EPERM);
    assert_eq!(e(libc::EDQUOT), ENOSPC);
    assert_eq!(e(libc::EFBIG), ENOSPC);
    assert_eq!(e(libc::EOPNOTSUPP), ENOTSUP);
    assert_eq!(e(libc::ESHUTDOWN), ESHUTDOWN);
    assert_eq!(e(libc::EOVERFLOW), EOVERFLOW);
    assert_eq!(e(libc::ENOENT), EINVAL);
}
