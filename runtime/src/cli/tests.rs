//! Whole command lines: what they turn into, and, for bad ones, the message
//! qemu-storage-daemon 10.0.2 printed for the same line.
//!
//! The table of bad command lines is checked against two sets of types:
//! QEMU 10.0's whole storage daemon schema (from `../shared`, as the
//! installed qsd has it), so that every row can be compared with qsd, and
//! the daemon's own schema for the rows it covers. The ignored test
//! `table_matches_live_qsd` runs the installed qemu-storage-daemon on every
//! row and compares its output with the table.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// QEMU 10.0's storage daemon schema, with the conditions of the Debian
/// build installed here (all but CONFIG_BLKIO, CONFIG_BLKIO_VHOST_VDPA_FD
/// and CONFIG_WIN32), or `None` when `../shared` is absent.
fn qemu_types() -> Option<&'static TypeInfo> {
    static TYPES: OnceLock<Option<TypeInfo>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/qemu-qapi-10.0/schema/storage-daemon/qapi/qapi-schema.json"
            );
            if !std::path::Path::new(path).exists() {
                eprintln!("skipped: {path} does not exist");
                return None;
            }
            let schema = qapi_gen::Schema::load(path, &qapi_gen::CheckOptions::default())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let disabled = ["CONFIG_BLKIO", "CONFIG_BLKIO_VHOST_VDPA_FD", "CONFIG_WIN32"];
            let entries = qapi_gen::introspect::type_entries(&schema);
            let json = qapi_gen::introspect::to_json(&entries, &|c| !disabled.contains(&c));
            Some(TypeInfo::from_entries(&json))
        })
        .as_ref()
}

/// The command line up to type conversion (no decoding into the daemon's
/// generated types), against `types`.
fn check(args: &[&str], types: &TypeInfo) -> Result<Vec<Converted>, CliError> {
    let cl = CommandLine::parse(&strings(args))?;
    if let Some(e) = cl.early_exit() {
        return Ok(vec![Converted::Done(e.clone())]);
    }
    cl.raw.iter().map(|r| convert_option(r, types)).collect()
}

/// Which schemas a row holds for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// QEMU's and the daemon's.
    Both,
    /// QEMU's only: the daemon's schema lacks the driver, export type or
    /// member, or the row depends on a cargo feature.
    Qemu,
}
use Scope::{Both, Qemu};

/// Bad command lines and what qemu-storage-daemon 10.0.2 printed for each
/// (after "qemu-storage-daemon: "), exit status 1 in every case.
const BAD: &[(&[&str], &str, Scope)] = &[
    // getopt
    (&["--foo"], "unrecognized option '--foo'", Both),
    (&["--foo=bar"], "unrecognized option '--foo=bar'", Both),
    (
        &["--blockdev"],
        "option '--blockdev' requires an argument",
        Both,
    ),
    (&["--p"], "option '--pidfile' requires an argument", Both),
    (
        &["--daemonize=1"],
        "option '--daemonize' doesn't allow an argument",
        Both,
    ),
    (
        &["--version=1"],
        "option '--version' doesn't allow an argument",
        Both,
    ),
    (
        &["--help=x"],
        "option '--help' doesn't allow an argument",
        Both,
    ),
    (&["-x"], "invalid option -- 'x'", Both),
    (&["-xV"], "invalid option -- 'x'", Both),
    (&["-T"], "option requires an argument -- 'T'", Both),
    (&["-Tfoo", "-x"], "invalid option -- 'x'", Both),
    (&["foo", "--foo"], "unrecognized option '--foo'", Both),
    (
        &["--=x"],
        "option '--=x' is ambiguous; possibilities: '--blockdev' '--chardev' '--daemonize' \
         '--export' '--help' '--monitor' '--nbd-server' '--object' '--pidfile' '--trace' \
         '--version'",
        Both,
    ),
    // stray arguments, in order with the options
    (&["foo"], "foo: Unexpected argument", Both),
    (&["-"], "-: Unexpected argument", Both),
    (&[""], ": Unexpected argument", Both),
    (
        &["foo", "--blockdev", "null-co,foo=1"],
        "foo: Unexpected argument",
        Both,
    ),
    (
        &["--blockdev", "null-co,foo=1", "foo"],
        "--blockdev null-co,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    // option spellings: the location is the option as given
    (
        &["--blockdev", "null-co,foo=1"],
        "--blockdev null-co,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &["--blockdev=null-co,foo=1"],
        "--blockdev=null-co,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &["--b=null-co,foo=1"],
        "--b=null-co,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &["--block", "null-co,foo=1"],
        "--block null-co,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &["--d", "--blockdev", "x"],
        "--blockdev x: Parameter 'driver' does not accept value 'x'",
        Both,
    ),
    // keyval syntax
    (
        &["--blockdev", "help"],
        "--blockdev help: Help is not available for this option",
        Both,
    ),
    (
        &["--blockdev", "null-co,help"],
        "--blockdev null-co,help: Help is not available for this option",
        Both,
    ),
    (
        &["--blockdev", ""],
        "--blockdev : Parameter 'driver' is missing",
        Both,
    ),
    (&["--blockdev=", "--x"], "unrecognized option '--x'", Both),
    (
        &["--blockdev", "null-co,a"],
        "--blockdev null-co,a: Expected '=' after parameter 'a'",
        Both,
    ),
    (
        &["--blockdev", "null-co,=1"],
        "--blockdev null-co,=1: Invalid parameter ''",
        Both,
    ),
    (
        &["--blockdev", "null-co,a..b=1"],
        "--blockdev null-co,a..b=1: Invalid parameter 'a..b'",
        Both,
    ),
    (
        &["--blockdev", "null-co,0=x"],
        "--blockdev null-co,0=x: Invalid parameter '0'",
        Both,
    ),
    (
        &["--blockdev", "null-co,,x"],
        "--blockdev null-co,,x: Invalid parameter ''",
        Both,
    ),
    (
        &["--blockdev", ",node-name=x"],
        "--blockdev ,node-name=x: Invalid parameter ''",
        Both,
    ),
    (
        &["--blockdev", "raw,file=node0,file.driver=x"],
        "--blockdev raw,file=node0,file.driver=x: Parameters 'file.*' used inconsistently",
        Both,
    ),
    (
        &["--blockdev", "raw,file=x,a.1=y"],
        "--blockdev raw,file=x,a.1=y: Parameter 'a.0' missing",
        Both,
    ),
    (
        &["--blockdev", "raw,file=x,a.0=y,a.b=z"],
        "--blockdev raw,file=x,a.0=y,a.b=z: Parameters 'a.*' used inconsistently",
        Both,
    ),
    (
        &["--blockdev", "driver=null-co,node-name=a,,b,x=1"],
        "--blockdev driver=null-co,node-name=a,,b,x=1: Parameter 'x' is unexpected",
        Both,
    ),
    // conversion by type
    (
        &["--blockdev", "null-co,node-name=a,driver=file"],
        "--blockdev null-co,node-name=a,driver=file: Parameter 'filename' is missing",
        Both,
    ),
    (
        &["--blockdev", "foo"],
        "--blockdev foo: Parameter 'driver' does not accept value 'foo'",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,size=1x"],
        "--blockdev null-co,node-name=a,size=1x: Parameter 'size' expects integer",
        Both,
    ),
    (
        &["--blockdev", "null-co,size=08,x=1"],
        "--blockdev null-co,size=08,x=1: Parameter 'size' expects integer",
        Both,
    ),
    (
        &["--blockdev", "null-co,size=0x10,x=1"],
        "--blockdev null-co,size=0x10,x=1: Parameter 'x' is unexpected",
        Both,
    ),
    (
        &["--blockdev", "null-co,size=9223372036854775808,x=1"],
        "--blockdev null-co,size=9223372036854775808,x=1: Parameter 'size' expects integer",
        Both,
    ),
    (
        &["--blockdev", "null-co,latency-ns=-1,x=1"],
        "--blockdev null-co,latency-ns=-1,x=1: Parameter 'x' is unexpected",
        Both,
    ),
    (
        &["--blockdev", "null-co,latency-ns=18446744073709551616,x=1"],
        "--blockdev null-co,latency-ns=18446744073709551616,x=1: \
         Parameter 'latency-ns' expects integer",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,read-only=maybe"],
        "--blockdev null-co,node-name=a,read-only=maybe: \
         Parameter 'read-only' expects 'on' or 'off'",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,read-only=y,size=x"],
        "--blockdev null-co,node-name=a,read-only=y,size=x: Parameter 'size' expects integer",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,read-only.x=1"],
        "--blockdev null-co,node-name=a,read-only.x=1: Parameters 'read-only.*' are unexpected",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,cache=on"],
        "--blockdev null-co,node-name=a,cache=on: \
         Invalid parameter type for 'cache', expected: object",
        Both,
    ),
    (
        &["--blockdev", "null-co,node-name=a,discard=x"],
        "--blockdev null-co,node-name=a,discard=x: Parameter 'discard' does not accept value 'x'",
        Both,
    ),
    (
        &["--blockdev", "null-co,x=1,y=1"],
        "--blockdev null-co,x=1,y=1: Parameter 'y' is unexpected",
        Both,
    ),
    (
        &[
            "--blockdev",
            "null-co,k1=1,k2=2,k3=3,k4=4,k5=5,k6=6,k7=7,k8=8,k9=9,k10=1,k11=1,k12=1,k13=1,\
             k14=1,k15=1,k16=1,k17=1",
        ],
        "--blockdev null-co,k1=1,k2=2,k3=3,k4=4,k5=5,k6=6,k7=7,k8=8,k9=9,k10=1,k11=1,k12=1,\
         k13=1,k14=1,k15=1,k16=1,k17=1: Parameter 'k7' is unexpected",
        Both,
    ),
    (
        &[
            "--blockdev",
            "null-co,node-name=n,cache.direct=on,cache.x=1,cache.y=2",
        ],
        "--blockdev null-co,node-name=n,cache.direct=on,cache.x=1,cache.y=2: \
         Parameter 'cache.y' is unexpected",
        Both,
    ),
    // alternates (BlockdevRef)
    (
        &["--blockdev", "raw,file.driver=file"],
        "--blockdev raw,file.driver=file: Parameter 'file.filename' is missing",
        Both,
    ),
    (
        &["--blockdev", "raw,file.0=x"],
        "--blockdev raw,file.0=x: Invalid parameter type for 'file', expected: BlockdevRef",
        Both,
    ),
    (
        &[
            "--blockdev",
            "raw,file.driver=file,file.filename=/nonexist,file.foo=1",
        ],
        "--blockdev raw,file.driver=file,file.filename=/nonexist,file.foo=1: \
         Parameter 'file.foo' is unexpected",
        Both,
    ),
    (
        &[
            "--blockdev",
            "raw,file.driver=file,file.filename=/nonexist,file.aio=foo",
        ],
        "--blockdev raw,file.driver=file,file.filename=/nonexist,file.aio=foo: \
         Parameter 'aio' does not accept value 'foo'",
        Both,
    ),
    // JSON
    (
        &["--blockdev", r#"{"driver":"null-co","foo":1}"#],
        r#"--blockdev {"driver":"null-co","foo":1}: Parameter 'foo' is unexpected"#,
        Both,
    ),
    (
        &["--blockdev", "{'driver':'null-co','x':1}"],
        "--blockdev {'driver':'null-co','x':1}: Parameter 'x' is unexpected",
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":"null-co","size":"1"}"#],
        r#"--blockdev {"driver":"null-co","size":"1"}: Invalid parameter type for 'size', expected: integer"#,
        Both,
    ),
    (
        &[
            "--blockdev",
            r#"{"driver":"null-co","latency-ns":18446744073709551616}"#,
        ],
        r#"--blockdev {"driver":"null-co","latency-ns":18446744073709551616}: Parameter 'latency-ns' expects uint64"#,
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":"null-co","read-only":"on"}"#],
        r#"--blockdev {"driver":"null-co","read-only":"on"}: Invalid parameter type for 'read-only', expected: boolean"#,
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":"raw","file":null}"#],
        r#"--blockdev {"driver":"raw","file":null}: Invalid parameter type for 'file', expected: BlockdevRef"#,
        Both,
    ),
    (
        &["--blockdev", "{]"],
        "--blockdev {]: JSON parse error, expecting value",
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":"null-co""#],
        r#"--blockdev {"driver":"null-co": JSON parse error, premature EOI"#,
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":"null-co"} x"#],
        r#"--blockdev {"driver":"null-co"} x: Expecting at most one JSON value"#,
        Both,
    ),
    (
        &["--blockdev", r#"{"driver":null-co}"#],
        r#"--blockdev {"driver":null-co}: JSON parse error, stray '-c'"#,
        Both,
    ),
    (
        &["--blockdev", r#"{"x":1,"x":2}"#],
        r#"--blockdev {"x":1,"x":2}: JSON parse error, duplicate key"#,
        Both,
    ),
    // --nbd-server
    (
        &[
            "--nbd-server",
            "addr.type=unix,addr.path=/tmp/n.sock,max-connections=4294967296",
        ],
        "--nbd-server addr.type=unix,addr.path=/tmp/n.sock,max-connections=4294967296: \
         Parameter 'max-connections' expects uint32_t",
        Both,
    ),
    (
        &[
            "--nbd-server",
            "addr.type=unix,addr.path=/tmp/n.sock,max-connections=-1",
        ],
        "--nbd-server addr.type=unix,addr.path=/tmp/n.sock,max-connections=-1: \
         Parameter 'max-connections' expects uint32_t",
        Both,
    ),
    (
        &["--nbd-server", "addr.type=foo"],
        "--nbd-server addr.type=foo: Parameter 'type' does not accept value 'foo'",
        Both,
    ),
    (
        &["--nbd-server", "addr.type=inet,addr.host=localhost"],
        "--nbd-server addr.type=inet,addr.host=localhost: Parameter 'addr.port' is missing",
        Both,
    ),
    (
        &["--nbd-server", "unix"],
        "--nbd-server unix: Expected '=' after parameter 'unix'",
        Both,
    ),
    (
        &["--nbd-server", ""],
        "--nbd-server : Parameter 'addr' is missing",
        Both,
    ),
    (
        &[
            "--nbd-server",
            r#"{"addr":{"type":"unix","path":"/tmp/n.sock"},"max-connections":-1}"#,
        ],
        r#"--nbd-server {"addr":{"type":"unix","path":"/tmp/n.sock"},"max-connections":-1}: Parameter 'max-connections' expects uint32_t"#,
        Both,
    ),
    // --export
    (
        &["--export", "nbd"],
        "--export nbd: Parameter 'id' is missing",
        Both,
    ),
    (&["--e", "nbd"], "--e nbd: Parameter 'id' is missing", Both),
    (
        &["--export", "nbd,id=e"],
        "--export nbd,id=e: Parameter 'node-name' is missing",
        Both,
    ),
    (
        &["--export", "foo,id=e,node-name=n"],
        "--export foo,id=e,node-name=n: Parameter 'type' does not accept value 'foo'",
        Both,
    ),
    (
        &["--export", "nbd,id=e,node-name=n,writable=x"],
        "--export nbd,id=e,node-name=n,writable=x: Parameter 'writable' expects 'on' or 'off'",
        Both,
    ),
    (
        &[
            "--export",
            "nbd,id=e,node-name=n,name=a,,b,description=x,foo=1",
        ],
        "--export nbd,id=e,node-name=n,name=a,,b,description=x,foo=1: \
         Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &[
            "--export",
            "type=nbd,id=e,node-name=n,iothread.0=a,iothread.1=b,fixed-iothread=on",
        ],
        "--export type=nbd,id=e,node-name=n,iothread.0=a,iothread.1=b,fixed-iothread=on: \
         Parameters 'iothread.*' are unexpected",
        Both,
    ),
    (
        &["--export", "nbd,id=e,node-name=n,iothread=x,iothread.0=b"],
        "--export nbd,id=e,node-name=n,iothread=x,iothread.0=b: \
         Parameters 'iothread.*' used inconsistently",
        Both,
    ),
    (
        &[
            "--export",
            "vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,num-queues=65536",
        ],
        "--export vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,\
         num-queues=65536: Parameter 'num-queues' expects uint16_t",
        Qemu,
    ),
    (
        &[
            "--export",
            "vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,\
             logical-block-size=x",
        ],
        "--export vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,\
         logical-block-size=x: Parameter 'logical-block-size' expects size",
        Qemu,
    ),
    (
        &[
            "--export",
            "vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,\
             logical-block-size=16E",
        ],
        "--export vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/tmp/v.sock,\
         logical-block-size=16E: Parameter 'logical-block-size' expects size",
        Qemu,
    ),
    (
        &[
            "--export",
            "fuse,id=e,node-name=n,mountpoint=/x,allow-other=maybe",
        ],
        "--export fuse,id=e,node-name=n,mountpoint=/x,allow-other=maybe: \
         Parameter 'allow-other' does not accept value 'maybe'",
        Qemu,
    ),
    // --monitor
    (
        &["--monitor", "chardev=m,mode=x"],
        "--monitor chardev=m,mode=x: Parameter 'mode' does not accept value 'x'",
        Both,
    ),
    (
        &["--monitor", "chardev=m,pretty=x"],
        "--monitor chardev=m,pretty=x: Parameter 'pretty' expects 'on' or 'off'",
        Both,
    ),
    (
        &["--monitor", "mode=control"],
        "--monitor mode=control: Parameter 'chardev' is missing",
        Both,
    ),
    (
        &["--monitor", "chardev=m,foo=1"],
        "--monitor chardev=m,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    // --object
    (
        &["--object", "foo,id=x"],
        "--object foo,id=x: Parameter 'qom-type' does not accept value 'foo'",
        Both,
    ),
    (
        &["--object", "iothread"],
        "--object iothread: Parameter 'id' is missing",
        Both,
    ),
    (
        &["--object", ""],
        "--object : Parameter 'qom-type' is missing",
        Both,
    ),
    (
        &["--object", r#"{"qom-type":"iothread"}"#],
        r#"--object {"qom-type":"iothread"}: Parameter 'id' is missing"#,
        Both,
    ),
    (
        &["--object", "iothread,id=x,poll-max-ns=abc"],
        "--object iothread,id=x,poll-max-ns=abc: Parameter 'poll-max-ns' expects integer",
        Both,
    ),
    (
        &["--object", "iothread,id=x,foo=1"],
        "--object iothread,id=x,foo=1: Parameter 'foo' is unexpected",
        Both,
    ),
    (
        &["--object", "iothread,id=1x"],
        "--object iothread,id=1x: Parameter 'id' expects an identifier\n\
         Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
        Both,
    ),
    (
        &["--object", "iothread,id=a,help,x..y=1"],
        "--object iothread,id=a,help,x..y=1: Invalid parameter 'x..y'",
        Both,
    ),
    (
        &["--object", "iothread,id=x,poll-max-ns=-1,poll-grow=-1"],
        "--object iothread,id=x,poll-max-ns=-1,poll-grow=-1: \
         poll-grow value must be in range [0, 9223372036854775807]",
        Both,
    ),
    (
        &["--object", "iothread,id=x,aio-max-batch=-1,poll-grow=-1"],
        "--object iothread,id=x,aio-max-batch=-1,poll-grow=-1: \
         aio-max-batch value must be in range [0, 9223372036854775807]",
        Both,
    ),
    (
        &["--object", "iothread,id=x,thread-pool-min=100"],
        "--object iothread,id=x,thread-pool-min=100: bad thread-pool-min/thread-pool-max values",
        Both,
    ),
    (
        &["--object", "iothread,id=x,thread-pool-max=0"],
        "--object iothread,id=x,thread-pool-max=0: bad thread-pool-min/thread-pool-max values",
        Both,
    ),
    // --chardev
    (
        &["--chardev", "foo,id=x"],
        "--chardev foo,id=x: 'foo' is not a valid char driver name",
        Both,
    ),
    (
        &["--chardev", "socket"],
        "--chardev socket: chardev: no id specified",
        Both,
    ),
    (
        &["--chardev", "id=m,path=/tmp/m.sock"],
        "--chardev id=m,path=/tmp/m.sock: chardev: \"m\" missing backend",
        Both,
    ),
    (
        &["--chardev", "socket,id=m,path=/tmp/m.sock,server=x"],
        "--chardev socket,id=m,path=/tmp/m.sock,server=x: Parameter 'server' expects 'on' or 'off'",
        Both,
    ),
    (
        &[
            "--chardev",
            "socket,id=m,path=/tmp/m.sock,server=on,wait=off,foo=1",
        ],
        "--chardev socket,id=m,path=/tmp/m.sock,server=on,wait=off,foo=1: Invalid parameter 'foo'",
        Both,
    ),
    (
        &["--chardev", "socket,id=m,host=localhost"],
        "--chardev socket,id=m,host=localhost: chardev: socket: no port given",
        Both,
    ),
    (
        &["--chardev", "socket,id=m,path=/tmp/m.sock,host=h"],
        "--chardev socket,id=m,path=/tmp/m.sock,host=h: \
         None or one of 'path', 'fd' or 'host' option required.",
        Both,
    ),
    (
        &["--chardev", "socket,id=1m,path=/tmp/m.sock"],
        "--chardev socket,id=1m,path=/tmp/m.sock: Parameter 'id' expects an identifier\n\
         Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
        Both,
    ),
    (
        &["--chardev", "socket,id=m,path=/tmp/m.sock,reconnect=x"],
        "--chardev socket,id=m,path=/tmp/m.sock,reconnect=x: Parameter 'reconnect' expects a number",
        Both,
    ),
    (
        &["--chardev", "file,id=m"],
        "--chardev file,id=m: chardev: file: no filename given",
        Both,
    ),
];

#[test]
fn bad_command_lines_as_qsd_10_0() {
    assert!(BAD.len() >= 20);
    if let Some(qemu) = qemu_types() {
        for (args, want, _) in BAD {
            match check(args, qemu) {
                Err(e) => assert_eq!(e.to_string(), *want, "{args:?}"),
                Ok(v) => panic!("{args:?} was accepted: {v:?}"),
            }
        }
    }
    // The daemon's own types, with decoding into the generated types.
    for (args, want, scope) in BAD {
        if *scope == Both {
            match parse_args(&strings(args)) {
                Err(e) => assert_eq!(e.to_string(), *want, "{args:?}"),
                Ok(v) => panic!("{args:?} was accepted: {v:?}"),
            }
        }
    }
}

/// Runs the installed qemu-storage-daemon on every row of [`BAD`]; its
/// stderr must be the row's text after the program name. Needs
/// qemu-storage-daemon 10.0 in PATH: `cargo test -p storage-runtime --lib
/// table_matches_live_qsd -- --ignored`.
#[test]
#[ignore]
fn table_matches_live_qsd() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut failures = Vec::new();
    for (args, want, _) in BAD {
        let mut child = Command::new("qemu-storage-daemon")
            .args(*args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-storage-daemon runs");
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("qemu-storage-daemon: {want}\n");
        if stderr != expected || out.status.code() != Some(1) {
            failures.push(format!(
                "{args:?}: status {:?}\n  qsd:   {stderr:?}\n  table: {expected:?}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn blockdev(o: &CliOption) -> &QapiOption<qapi::BlockdevOptions> {
    match o {
        CliOption::Blockdev(b) => b,
        other => panic!("not a --blockdev: {other:?}"),
    }
}

#[test]
fn a_whole_command_line() {
    let args = strings(&[
        "--chardev",
        "socket,id=m,path=/tmp/qmp.sock,server=on,wait=off",
        "--monitor",
        "m,pretty=on",
        "--object",
        "iothread,id=io0,poll-max-ns=32768",
        "--blockdev",
        "null-co,node-name=n0,size=1073741824,read-zeroes=on",
        "--blockdev=file,node-name=f0,filename=/tmp/disk,,1.img,cache.direct=on,aio=threads",
        "--blockdev",
        "raw,node-name=r0,file=f0,offset=0x1000",
        "--nbd-server",
        "addr.type=unix,addr.path=/tmp/nbd.sock,max-connections=4",
        "--export",
        "nbd,id=e0,node-name=r0,writable=yes,name=disk",
        "--pidfile",
        "/tmp/qsd.pid",
        "--daemonize",
        "-T",
        "nbd_*",
    ]);
    let opts = parse_args(&args).expect("parses");
    assert_eq!(opts.len(), 11);

    let CliOption::Chardev(c) = &opts[0] else {
        panic!("{:?}", opts[0])
    };
    assert_eq!(c.id, "m");
    assert_eq!(
        c.location,
        "--chardev socket,id=m,path=/tmp/qmp.sock,server=on,wait=off"
    );
    let ChardevBackend::Socket(s) = &c.backend else {
        panic!("{:?}", c.backend)
    };
    assert!(s.server);
    assert_eq!(s.wait, Some(false));

    assert_eq!(
        opts[1],
        CliOption::Monitor(MonitorSpec {
            location: "--monitor m,pretty=on".into(),
            id: None,
            chardev: "m".into(),
            mode: MonitorMode::Control,
            pretty: true,
        })
    );
    let CliOption::Object(o) = &opts[2] else {
        panic!("{:?}", opts[2])
    };
    assert_eq!((o.qom_type.as_str(), o.id.as_str()), ("iothread", "io0"));
    assert_eq!(
        Value::Object(o.props.clone()),
        json!({ "poll-max-ns": 32768 })
    );

    let n0 = blockdev(&opts[3]);
    assert_eq!(
        Value::Object(n0.json.clone()),
        json!({ "driver": "null-co", "node-name": "n0", "size": 1073741824, "read-zeroes": true })
    );
    let qapi::BlockdevOptionsBranch::NullCo(null) = &n0.value.branch else {
        panic!("{:?}", n0.value)
    };
    assert_eq!(null.size, Some(1 << 30));
    assert_eq!(null.read_zeroes, Some(true));

    let f0 = blockdev(&opts[4]);
    assert_eq!(
        f0.location,
        "--blockdev=file,node-name=f0,filename=/tmp/disk,,1.img,cache.direct=on,aio=threads"
    );
    let qapi::BlockdevOptionsBranch::File(file) = &f0.value.branch else {
        panic!("{:?}", f0.value)
    };
    assert_eq!(file.filename, "/tmp/disk,1.img");
    assert_eq!(f0.value.cache.as_ref().and_then(|c| c.direct), Some(true));

    let r0 = blockdev(&opts[5]);
    let qapi::BlockdevOptionsBranch::Raw(raw) = &r0.value.branch else {
        panic!("{:?}", r0.value)
    };
    assert_eq!(*raw.file, qapi::BlockdevRef::Reference("f0".into()));
    assert_eq!(raw.offset, Some(4096));

    let CliOption::NbdServer(nbd) = &opts[6] else {
        panic!("{:?}", opts[6])
    };
    assert_eq!(nbd.value.max_connections, Some(4));
    assert_eq!(
        Value::Object(nbd.json.clone()),
        json!({ "addr": { "type": "unix", "path": "/tmp/nbd.sock" }, "max-connections": 4 })
    );
    let CliOption::Export(e) = &opts[7] else {
        panic!("{:?}", opts[7])
    };
    assert_eq!(e.value.id, "e0");
    assert_eq!(e.json["writable"], json!(true));
    assert_eq!(opts[8], CliOption::Pidfile("/tmp/qsd.pid".into()));
    assert_eq!(opts[9], CliOption::Daemonize);
    assert_eq!(
        opts[10],
        CliOption::Trace {
            location: "-T nbd_*".into(),
            spec: "nbd_*".into()
        }
    );
}

#[test]
fn blockdev_ref_by_name_or_inline() {
    let by_name =
        parse_args(&strings(&["--blockdev", "raw,node-name=r,file=node0"])).expect("parses");
    let qapi::BlockdevOptionsBranch::Raw(raw) = &blockdev(&by_name[0]).value.branch else {
        panic!("not raw")
    };
    assert_eq!(*raw.file, qapi::BlockdevRef::Reference("node0".into()));

    let inline = parse_args(&strings(&[
        "--blockdev",
        "raw,node-name=r,file.driver=file,file.filename=/tmp/x,file.locking=off",
    ]))
    .expect("parses");
    let b = blockdev(&inline[0]);
    assert_eq!(
        Value::Object(b.json.clone()),
        json!({ "driver": "raw", "node-name": "r",
                "file": { "driver": "file", "filename": "/tmp/x", "locking": "off" } })
    );
    let qapi::BlockdevOptionsBranch::Raw(raw) = &b.value.branch else {
        panic!("not raw")
    };
    let qapi::BlockdevRef::Definition(def) = &*raw.file else {
        panic!("not inline: {:?}", raw.file)
    };
    let qapi::BlockdevOptionsBranch::File(file) = &def.branch else {
        panic!("not a file: {def:?}")
    };
    assert_eq!(file.filename, "/tmp/x");

    // The same in JSON.
    let json_form = parse_args(&strings(&[
        "--blockdev",
        r#"{"driver": "raw", "node-name": "r",
            "file": {"driver": "file", "filename": "/tmp/x", "locking": "off"}}"#,
    ]))
    .expect("parses");
    assert_eq!(blockdev(&json_form[0]).value, b.value);
}

#[test]
fn generic_conversion_and_typed_access() {
    // Any QAPI type the schema has, by name.
    assert_eq!(
        convert_arg(
            "m,pretty=on",
            "MonitorOptions",
            Some("chardev"),
            TypeInfo::daemon()
        ),
        Ok(json!({ "pretty": true, "chardev": "m" })
            .as_object()
            .cloned()
            .unwrap_or_default())
    );
    let nbd: QapiOption<qapi::NbdServerOptions> = parse_qapi(
        "--nbd-server addr.type=inet,addr.host=::1,addr.port=10809",
        "addr.type=inet,addr.host=::1,addr.port=10809",
        None,
    )
    .expect("parses");
    assert_eq!(
        Value::Object(nbd.json),
        json!({ "addr": { "type": "inet", "host": "::1", "port": "10809" } })
    );
    assert_eq!(
        parse_qapi::<qapi::BlockdevOptions>("--blockdev x", "x", Some("driver")),
        Err(CliError::Invalid {
            location: "--blockdev x".into(),
            message: "Parameter 'driver' does not accept value 'x'".into()
        })
    );
}

#[test]
fn sizes_and_integers_against_qemu_types() {
    let Some(qemu) = qemu_types() else { return };
    let one = |args: &[&str]| match check(args, qemu) {
        Ok(mut v) if v.len() == 1 => match v.remove(0) {
            Converted::Blockdev(_, j) | Converted::Export(_, j) | Converted::NbdServer(_, j) => {
                Value::Object(j)
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{args:?}: {other:?}"),
    };
    let vub = |lbs: &str| {
        one(&[
            "--export",
            &format!(
                "vhost-user-blk,id=e,node-name=n,addr.type=fd,addr.str=3,logical-block-size={lbs}"
            ),
        ])["logical-block-size"]
            .clone()
    };
    assert_eq!(vub("512"), json!(512));
    assert_eq!(vub("4k"), json!(4096));
    assert_eq!(vub("1.5k"), json!(1536));
    assert_eq!(vub("0x200"), json!(512));
    assert_eq!(vub("1M"), json!(1 << 20));
    let cbw = one(&[
        "--blockdev",
        "copy-before-write,file=a,target=b,min-cluster-size=1.5G,cbw-timeout=010",
    ]);
    assert_eq!(cbw["min-cluster-size"], json!(1_610_612_736u64));
    assert_eq!(cbw["cbw-timeout"], json!(8));
    let file = one(&["--blockdev", "file,filename=/x,aio-max-batch=-0x10"]);
    assert_eq!(file["aio-max-batch"], json!(-16));
    let null = one(&["--blockdev", "null-co,latency-ns=-1,size=010"]);
    assert_eq!(null["latency-ns"], json!(u64::MAX));
    assert_eq!(null["size"], json!(8));
    // Lists of objects and of alternates.
    let quorum = one(&[
        "--blockdev",
        "quorum,vote-threshold=2,children.0=a,children.1.driver=null-co,children.2=c",
    ]);
    assert_eq!(
        quorum["children"],
        json!(["a", { "driver": "null-co" }, "c"])
    );
}

#[test]
fn help_and_version_come_first() {
    let run = |a: &[&str]| parse_args(&strings(a));
    assert_eq!(run(&["-h", "--foo"]), Ok(vec![CliOption::Help]));
    assert_eq!(
        run(&["--blockdev", "x", "--help"]),
        Ok(vec![CliOption::Help])
    );
    assert_eq!(run(&["--hel"]), Ok(vec![CliOption::Help]));
    assert_eq!(run(&["-V", "-h"]), Ok(vec![CliOption::Version]));
    assert_eq!(run(&["-Vh"]), Ok(vec![CliOption::Version]));
    assert_eq!(run(&["-Vx"]), Ok(vec![CliOption::Version]));
    assert_eq!(run(&["-T", "foo", "-V"]), Ok(vec![CliOption::Version]));
    assert_eq!(
        run(&["--foo", "-h"]),
        Err(CliError::Usage("unrecognized option '--foo'".into()))
    );
    // `--` ends the options; the rest is ignored.
    assert_eq!(run(&["--", "--foo", "bar"]), Ok(vec![]));
    assert_eq!(run(&[]), Ok(vec![]));
}

#[test]
fn options_take_effect_one_at_a_time() {
    let cl = CommandLine::parse(&strings(&[
        "--object",
        "iothread,id=a",
        "--blockdev",
        "foo",
        "--daemonize",
        "--pidfile",
        "/tmp/a",
        "--pidfile=/tmp/b",
    ]))
    .expect("first pass");
    assert!(cl.early_exit().is_none());
    assert!(cl.daemonize());
    assert_eq!(cl.pidfile(), Some("/tmp/b"));
    let mut it = cl.options();
    assert!(matches!(it.next(), Some(Ok(CliOption::Object(_)))));
    assert_eq!(
        it.next(),
        Some(Err(CliError::Invalid {
            location: "--blockdev foo".into(),
            message: "Parameter 'driver' does not accept value 'foo'".into()
        }))
    );
}

#[test]
fn help_inside_options() {
    let run = |a: &[&str]| parse_args(&strings(a));
    let Ok(v) = run(&["--object", "help"]) else {
        panic!("--object help")
    };
    assert_eq!(
        v,
        [CliOption::PrintHelp {
            text: "List of user creatable objects:\n  iothread\n".into(),
            status: 0
        }]
    );
    let Ok(v) = run(&["--object", "iothread,help"]) else {
        panic!("--object iothread,help")
    };
    // As qsd prints it.
    assert_eq!(
        v,
        [CliOption::PrintHelp {
            text: "iothread options:\n  aio-max-batch=<int>\n  poll-grow=<int>\n  \
                   poll-max-ns=<int>\n  poll-shrink=<int>\n  thread-pool-max=<int>\n  \
                   thread-pool-min=<int>\n"
                .into(),
            status: 0
        }]
    );
    assert!(matches!(
        run(&["--object", "foo,help"]).as_deref(),
        Ok([CliOption::PrintHelp { status: 0, .. }])
    ));
    assert!(matches!(
        run(&["--chardev", "help"]).as_deref(),
        Ok([CliOption::PrintHelp { status: 0, .. }])
    ));
    assert!(matches!(
        run(&["--chardev", "socket,help"]).as_deref(),
        Ok([CliOption::PrintHelp { status: 1, .. }])
    ));
}

#[test]
fn help_and_version_texts() {
    let help = help_text("storage-daemon");
    assert!(help.starts_with("Usage: storage-daemon [options]\n"));
    for opt in [
        "--blockdev",
        "--chardev",
        "--daemonize",
        "--export",
        "--monitor",
        "--nbd-server",
        "--object",
        "--pidfile",
        "-h, --help",
        "-T, --trace",
        "-V, --version",
    ] {
        assert!(help.contains(opt), "{opt}");
    }
    assert_eq!(help.contains("[type=]fuse"), cfg!(feature = "fuse"));
    let version = version_text();
    assert!(
        version.starts_with("storage-daemon version 10.0."),
        "{version}"
    );
    assert!(version.contains(&crate::daemon::package()));
}
