//! Bad input, on the monitor and on the command line.
//!
//! QMP: every malformed message gets a clear error and the daemon stays
//! up: after each one `query-version` still works on the same connection
//! and a second connection still works.
//!
//! Command line: the daemon exits 1 with qemu-storage-daemon's message for
//! the same arguments (program name aside) and leaves nothing behind: no
//! monitor socket file, no pid file, no image lock.

// Its command lines and QMP scripts (both compared with qsd) use NBD.
#![cfg(feature = "nbd")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, OURS, QSD, Qmp, TempDir, strings};
use serde_json::{Value, json};

/// What a bad message must get back: the desc of its (first) error.
enum Expect {
    Desc(&'static str),
    /// An error whose desc starts so (the rest quotes the input).
    Prefix(&'static str),
    /// A reply with this id (valid but odd input).
    Ok,
}

fn qmp_cases() -> Vec<(String, Vec<u8>, Expect)> {
    use Expect::*;
    let mut v: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    let mut add = |name: &str, input: &[u8], e: Expect| v.push((name.into(), input.to_vec(), e));
    // Malformed JSON.
    add("stray }", b"}", Desc("JSON parse error, expecting value"));
    add("stray ]", b"]", Desc("JSON parse error, expecting value"));
    add("stray :", b":", Desc("JSON parse error, expecting value"));
    add("stray ,", b",", Desc("JSON parse error, expecting value"));
    add(
        "missing value",
        br#"{"execute":}"#,
        Desc("JSON parse error, expecting value"),
    );
    add(
        "trailing comma",
        br#"{"execute":"query-version",}"#,
        Desc("JSON parse error, expecting value"),
    );
    add(
        "missing colon",
        br#"{"a" "b"}"#,
        Desc("JSON parse error, missing : in object pair"),
    );
    add(
        "non-string key",
        br#"{1: 2}"#,
        Desc("JSON parse error, key is not a string in object"),
    );
    add(
        "missing comma",
        br#"{"a": 1 "b": 2}"#,
        Desc("JSON parse error, expected separator in dict"),
    );
    add(
        "list separator",
        br#"{"id": [1 2]}"#,
        Desc("JSON parse error, expected separator in list"),
    );
    add(
        "duplicate key",
        br#"{"execute":"query-version","id":1,"id":2}"#,
        Desc("JSON parse error, duplicate key"),
    );
    add(
        "bad keyword",
        br#"{"execute":"query-version","id":nul}"#,
        Desc("JSON parse error, invalid keyword 'nul'"),
    );
    add(
        "bare word",
        b"garbage ",
        Desc("JSON parse error, invalid keyword 'garbage'"),
    );
    add(
        "capital keyword",
        br#"{"id":True}"#,
        Desc("JSON parse error, stray 'T'"),
    );
    add(
        "leading zero",
        br#"{"id":01}"#,
        Desc("JSON parse error, stray '01'"),
    );
    add(
        "plus sign",
        br#"{"id":+1}"#,
        Desc("JSON parse error, stray '+'"),
    );
    add(
        "bad escape",
        br#"{"id":"\x41"}"#,
        Desc("JSON parse error, invalid escape sequence in string"),
    );
    add(
        "lone surrogate",
        br#"{"id":"\ud800"}"#,
        Desc("JSON parse error, \\ud800 is not a valid Unicode character"),
    );
    add(
        "control char in string",
        b"{\"id\":\"a\nb\"}",
        Prefix("JSON parse error, stray '\"a"),
    );
    add(
        "invalid UTF-8",
        b"{\"id\":\"\xc3\x28\"}",
        Desc("JSON parse error, invalid UTF-8 sequence in string"),
    );
    add(
        "invalid UTF-8 bytes ff fe",
        b"{\"id\":\"\xff\xfe\"}",
        Desc("JSON parse error, invalid UTF-8 sequence in string"),
    );
    add(
        "truncated UTF-8",
        b"{\"execute\":\"query-version\",\"id\":\"\xe2\x82\"}",
        Desc("JSON parse error, invalid UTF-8 sequence in string"),
    );
    // Not a request object.
    add("array", b"[1,2]", Desc("QMP input must be a JSON object"));
    add(
        "empty array",
        b"[]",
        Desc("QMP input must be a JSON object"),
    );
    add(
        "string",
        br#""query-version""#,
        Desc("QMP input must be a JSON object"),
    );
    add("number", b"42 ", Desc("QMP input must be a JSON object"));
    add("null", b"null ", Desc("QMP input must be a JSON object"));
    add(
        "empty object",
        b"{}",
        Desc("QMP input lacks member 'execute'"),
    );
    // Bad request members.
    add(
        "unknown member",
        br#"{"execute":"query-version","extra":1}"#,
        Desc("QMP input member 'extra' is unexpected"),
    );
    add(
        "execute not a string",
        br#"{"execute":1}"#,
        Desc("QMP input member 'execute' must be a string"),
    );
    add(
        "execute null",
        br#"{"execute":null}"#,
        Desc("QMP input member 'execute' must be a string"),
    );
    add(
        "arguments not an object",
        br#"{"execute":"query-version","arguments":[]}"#,
        Desc("QMP input member 'arguments' must be an object"),
    );
    add(
        "arguments null",
        br#"{"execute":"query-version","arguments":null}"#,
        Desc("QMP input member 'arguments' must be an object"),
    );
    add(
        "no execute",
        br#"{"arguments":{}}"#,
        Desc("QMP input lacks member 'execute'"),
    );
    add(
        "exec-oob not enabled",
        br#"{"exec-oob":"query-version"}"#,
        Desc("QMP input member 'exec-oob' is unexpected"),
    );
    add(
        "negotiate again",
        br#"{"execute":"qmp_capabilities"}"#,
        Desc("Capabilities negotiation is already complete, command ignored"),
    );
    // Unknown commands.
    add(
        "unknown command",
        br#"{"execute":"nope"}"#,
        Desc("The command nope has not been found"),
    );
    add(
        "empty command",
        br#"{"execute":""}"#,
        Desc("The command  has not been found"),
    );
    add(
        "command with NUL",
        br#"{"execute":"query-version\u0000"}"#,
        Desc("The command query-version\u{0} has not been found"),
    );
    add(
        "qsd-only command",
        br#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"x"}}"#,
        Desc("The command object-add has not been found"),
    );
    // Wrong or missing arguments.
    add(
        "unexpected argument",
        br#"{"execute":"query-version","arguments":{"x":1}}"#,
        Desc("Parameter 'x' is unexpected"),
    );
    add(
        "missing argument",
        br#"{"execute":"blockdev-del"}"#,
        Desc("Parameter 'node-name' is missing"),
    );
    add(
        "wrong type",
        br#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":1}}"#,
        Desc("Invalid parameter type for 'node-name', expected: string"),
    );
    add(
        "bad enum",
        br#"{"execute":"blockdev-add","arguments":{"driver":"nope","node-name":"x"}}"#,
        Desc("Parameter 'driver' does not accept value 'nope'"),
    );
    add(
        "missing discriminator",
        br#"{"execute":"block-export-add","arguments":{"id":"x","node-name":"n"}}"#,
        Desc("Parameter 'type' is missing"),
    );
    add("nested unknown member", br#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":{"driver":"null-co","bogus":{"x":1}}}}"#, Desc("Parameter 'file.bogus' is unexpected"));
    add("nested wrong type", br#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":{"driver":"null-co","size":"big"}}}"#, Desc("Invalid parameter type for 'file.size', expected: integer"));
    add("deeply nested missing", br#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"127.0.0.1"}}}}"#, Desc("Parameter 'addr.data.port' is missing"));
    add(
        "float for integer",
        br#"{"execute":"block_resize","arguments":{"node-name":"n","size":1.5}}"#,
        Desc("Invalid parameter type for 'size', expected: integer"),
    );
    add(
        "integer too big",
        br#"{"execute":"block_resize","arguments":{"node-name":"n","size":18446744073709551616}}"#,
        Desc("Invalid parameter type for 'size', expected: integer"),
    );
    add(
        "negative size",
        br#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"neg","size":-5}}"#,
        Desc("Value '-5' is out of range for parameter 'size'"),
    );
    add(
        "string for bool",
        br#"{"execute":"query-named-block-nodes","arguments":{"flat":"yes"}}"#,
        Desc("Invalid parameter type for 'flat', expected: boolean"),
    );
    add(
        "bad alternate",
        br#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":5}}"#,
        Prefix("Invalid parameter type for 'file', expected: "),
    );
    // Nesting and size.
    // (Our client's JSON parser stops at 128 levels; QEMU's limit is 1024.)
    let deep_ok = format!(
        "{{\"execute\":\"query-version\",\"id\":{}{}}}",
        "[".repeat(120),
        "]".repeat(120)
    );
    add("nesting 121 deep", deep_ok.as_bytes(), Expect::Ok);
    let deep = format!("{}{}", "[".repeat(1025), "]".repeat(1025));
    add(
        "nesting 1025 deep",
        deep.as_bytes(),
        Desc("JSON nesting depth limit exceeded"),
    );
    v
}

/// After a bad message: the same connection answers, and so does a new
/// one.
fn still_up(d: &Daemon, q: &mut Qmp, what: &str) {
    q.send_raw(br#"{"execute":"query-version","id":"probe"}"#);
    loop {
        let r = q.reply();
        if r.get("id") == Some(&json!("probe")) {
            assert_eq!(r["return"]["qemu"]["major"], 10, "{what}: {r}");
            break;
        }
        // Further errors for the rest of a bad value are fine.
        assert!(r.get("error").is_some(), "{what}: unexpected {r}");
    }
    let mut second = d.qmp();
    second.alive();
}

#[test]
fn malformed_qmp_messages() {
    let dir = TempDir::new("bad-qmp");
    let d = Daemon::start(
        OURS,
        &dir,
        &["--blockdev".into(), "null-co,node-name=n".into()],
    );
    let cases = qmp_cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut q = d.qmp();
    for (name, input, expect) in &cases {
        q.send_raw(input);
        // Bare scalars end at the next delimiter: the probe's brace.
        let r = q.reply();
        match expect {
            Expect::Desc(d) => assert_eq!(r["error"]["desc"], json!(d), "{name}: {r}"),
            Expect::Prefix(p) => assert!(
                r["error"]["desc"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(p)),
                "{name}: {r}"
            ),
            Expect::Ok => assert!(r.get("return").is_some(), "{name}: {r}"),
        }
        if !matches!(expect, Expect::Ok) {
            assert_eq!(
                r["error"]["class"].as_str().map(|c| !c.is_empty()),
                Some(true)
            );
        }
        still_up(&d, &mut q, name);
    }
}

#[test]
fn huge_strings_and_the_size_cap() {
    let dir = TempDir::new("bad-huge");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    // Megabytes through a debug build on a loaded 2-core machine: give
    // each answer longer than the usual timeout (CI once took over 10 s
    // to echo the 8 MiB id); this is a size test, not a timing test.
    let slow = |q: &mut Qmp| {
        q.recv_within(std::time::Duration::from_secs(120))
            .expect("an answer within 120 s")
    };
    // 8 MiB: a valid if silly id, echoed whole.
    let id = "x".repeat(8 << 20);
    q.send(&json!({"execute": "query-block-exports", "id": id}));
    let r = slow(&mut q);
    assert_eq!(r["id"].as_str().map(str::len), Some(8 << 20));
    // A huge unknown command name.
    let name = "c".repeat(1 << 20);
    q.send(&json!({"execute": name}));
    assert_eq!(slow(&mut q)["error"]["class"], "CommandNotFound");
    // Past QEMU's 64 MiB limit on one value: one error, then in step.
    let mut big = b"{\"execute\":\"query-version\",\"id\":\"".to_vec();
    big.resize(big.len() + (65 << 20), b'A');
    big.extend_from_slice(b"\"}");
    q.send_raw(&big);
    drop(big);
    let r = slow(&mut q);
    assert_eq!(r["error"]["desc"], "JSON token size limit exceeded", "{r}");
    still_up(&d, &mut q, "65 MiB message");
}

#[test]
fn interrupted_messages_then_disconnect() {
    let dir = TempDir::new("bad-cut");
    let d = Daemon::start(OURS, &dir, &[]);
    let cuts: [&[u8]; 7] = [
        b"{",
        b"{\"execute\": \"query-ver",
        b"{\"execute\": \"query-version\", \"arguments\": {",
        b"[[[[[[",
        b"{\"id\": \"\\",
        b"{\"id\": \"\xe2\x82",
        b"garbage",
    ];
    for cut in cuts {
        let mut q = d.qmp();
        q.send_raw(cut);
        // Nothing is answered for an incomplete value...
        assert_eq!(q.recv_within(Duration::from_millis(50)), None);
        q.close();
        // ...and the daemon goes on.
        d.qmp().alive();
    }
    // Disconnecting before negotiation, mid-greeting, or mid-command.
    drop(Qmp::connect_raw(d.qmp_path.as_deref().expect("monitor")));
    let mut q = Qmp::connect(d.qmp_path.as_deref().expect("monitor"));
    q.send_raw(br#"{"execute":"qmp_capabilities"}{"execute":"query-qmp-schema"}"#);
    q.close();
    d.qmp().alive();
}

#[test]
fn failed_blockdev_add_leaves_no_lock() {
    common::require("qemu-io");
    let dir = TempDir::new("bad-lock");
    let img = dir.join("img.raw");
    common::create_image(&img, "1M");
    let d = Daemon::start(OURS, &dir, &[]);
    let mut q = d.qmp();
    // The inline file node is opened (and locked), then the raw node
    // fails: both must go.
    let e = q.err(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "r", "offset": 1 << 30,
               "file": {"driver": "file", "filename": img}}),
    );
    assert!(
        e.desc.starts_with("Offset (1073741824) cannot be greater"),
        "{e:?}"
    );
    assert_eq!(q.cmd("query-named-block-nodes", Value::Null), json!([]));
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", &img])
        .output()
        .expect("qemu-io");
    assert!(out.status.success(), "image still locked: {out:?}");
    q.alive();
}

/// A failing command line: ours and qsd's exit code and stderr (program
/// name and scratch directory aside), and what ours left behind.
fn cli_case(args: &[&str], prefix: bool) -> (i32, String) {
    let mut results = Vec::new();
    for bin in [QSD, OURS] {
        let dir = TempDir::new("bad-cli");
        let img = dir.join("img.raw");
        common::create_image(&img, "1M");
        let mon = dir.join("mon.sock");
        let pid = dir.join("pid");
        let mut all = Vec::new();
        if prefix {
            // Side effects made before the bad option: a monitor socket,
            // a locked image, a pid file to come.
            all.extend(strings(&[
                "--chardev",
                &format!("socket,id=mon,path={mon},server=on,wait=off"),
                "--monitor",
                "chardev=mon",
                "--blockdev",
                &format!("driver=file,node-name=img,filename={img}"),
                "--pidfile",
                &pid,
            ]));
        }
        let d = dir.path().display().to_string();
        all.extend(args.iter().map(|a| a.replace("$DIR", &d)));
        let (code, _out, err) = common::run_to_exit(bin, &all);
        let err = err
            .replace(&d, "$DIR")
            .lines()
            .map(|l| {
                l.strip_prefix("qemu-storage-daemon: ")
                    .or_else(|| l.strip_prefix("storage-daemon: "))
                    .map_or_else(|| l.to_string(), |r| format!("PROG: {r}"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        if bin == OURS {
            // Nothing left behind (qsd leaves its monitor socket file).
            assert!(!common::exists(&mon), "{args:?}: monitor socket left");
            assert!(!common::exists(&pid), "{args:?}: pid file left");
            let out = Command::new("qemu-io")
                .args(["-f", "raw", "-c", "write 0 512", &img])
                .output()
                .expect("qemu-io");
            assert!(out.status.success(), "{args:?}: image locked: {out:?}");
        }
        results.push((code, err));
    }
    assert_eq!(results[0], results[1], "{args:?}: qsd vs ours");
    results.remove(0)
}

#[test]
fn bad_command_lines() {
    common::require(QSD);
    common::require("qemu-io");
    // Port 0: each daemon gets a port of its own from the kernel, so no
    // race with other processes for a "free" one.
    let inet = "addr.type=inet,addr.host=127.0.0.1,addr.port=0".to_string();
    let cases: Vec<(Vec<&str>, bool)> = vec![
        (vec!["--bogus"], false),
        (vec!["--blockdev"], false),
        (vec!["--monitor"], true),
        (vec!["-x"], true),
        (vec!["foo"], true),
        (vec!["--blockdev", "driver=nope,node-name=x"], true),
        (vec!["--blockdev", "null-co"], true),
        (vec!["--blockdev", "null-co,node-name=img"], true),
        (vec!["--blockdev", "null-co,node-name=n,bogus=1"], true),
        (vec!["--blockdev", "null-co,node-name=n,size=abc"], true),
        (vec!["--blockdev", "null-co,node-name=9n"], true),
        (
            vec!["--blockdev", "file,node-name=f,filename=/nonexistent/x"],
            true,
        ),
        (vec!["--blockdev", "raw,node-name=r,file=missing"], true),
        (
            vec!["--blockdev", r#"{"driver":"null-co","node-name":"j",}"#],
            true,
        ),
        (
            vec!["--blockdev", r#"{"driver":"null-co","node-name":"j""#],
            true,
        ),
        (
            vec![
                "--blockdev",
                r#"{"driver":"null-co","node-name":"j","node-name":"k"}"#,
            ],
            true,
        ),
        (
            vec![
                "--blockdev",
                "null-co,node-name=n",
                "--export",
                "type=nbd,id=e,node-name=n",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                &inet,
                "--export",
                "type=nbd,id=e,node-name=nx",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                &inet,
                "--export",
                "type=nbd,id=1e,node-name=img",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                &inet,
                "--export",
                "type=nbd,id=e,node-name=img,bitmap=b",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                &inet,
                "--export",
                "type=nbd,id=e,node-name=img",
                "--export",
                "type=nbd,id=e,node-name=img",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                &inet,
                "--nbd-server",
                "addr.type=unix,addr.path=$DIR/n.sock",
            ],
            true,
        ),
        (vec!["--nbd-server", "addr.type=unix"], true),
        // Address resolution with QEMU's hints and gai_strerror texts.
        (
            vec![
                "--nbd-server",
                "addr.type=inet,addr.host=localhost,addr.port=1,addr.ipv4=off",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                "addr.type=inet,addr.host=::1,addr.port=1,addr.ipv6=off",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                "addr.type=inet,addr.host=127.0.0.1,addr.port=nope",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                "addr.type=unix,addr.path=/nonexistent/dir/s",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                "addr.type=unix,addr.path=$DIR/n.sock,tls-creds=t",
            ],
            true,
        ),
        (
            vec![
                "--nbd-server",
                "addr.type=unix,addr.path=$DIR/n.sock,max-connections=x",
            ],
            true,
        ),
        (vec!["--export", "type=nbd,id=e,node-name=img"], true),
        (vec!["--export", "type=bogus,id=e,node-name=img"], true),
        (
            vec![
                "--chardev",
                "socket,id=mon,path=$DIR/b.sock,server=on,wait=off",
            ],
            true,
        ),
        (
            vec![
                "--chardev",
                "socket,id=c,path=$DIR/c.sock,server=on,wait=off,bogus=1",
            ],
            true,
        ),
        (vec!["--chardev", "bogus,id=c"], true),
        (
            vec!["--chardev", "socket,id=c,fd=77,server=on,wait=off"],
            true,
        ),
        (vec!["--monitor", "chardev=nochar"], true),
        (vec!["--monitor", "chardev=mon"], true),
        (vec!["--monitor", "chardev=mon,mode=readline"], true),
        (vec!["--object", "iothread"], true),
        (vec!["--object", "bogus,id=x"], true),
        (
            vec!["--object", "iothread,id=a", "--object", "iothread,id=a"],
            true,
        ),
        (vec!["--pidfile", "/nonexistent/dir/pid"], false),
        (
            vec![
                "--blockdev",
                "null-co,node-name=ro,read-only=on",
                "--nbd-server",
                &inet,
                "--export",
                "type=nbd,id=e,node-name=ro,writable=on",
            ],
            true,
        ),
    ];
    assert!(cases.len() >= 40);
    for (args, prefix) in &cases {
        eprintln!("{args:?}");
        let (code, err) = cli_case(args, *prefix);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.starts_with("PROG: "), "{args:?}: {err}");
    }
    // KNOWN DIFFERENCE, left out: client-mode and non-socket chardevs
    // (`--chardev socket,id=c` without server=on, `--chardev
    // file,...`): qsd opens them, we only listen ("only listening socket
    // chardevs (server=on) are supported").
}

/// Monitor and NBD listeners fail with qsd's words: both go through
/// exports::sockets (resolution, every address, a port in use, unix paths).
#[test]
fn listener_errors_equal_qsds() {
    common::require(QSD);
    common::require("qemu-io");
    // A port somebody else listens on, held for the whole test.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").port();
    let chardev = |what: &str| format!("socket,id=m,{what},server=on,wait=off");
    let cases = [
        chardev("host=no-such-host.invalid,port=4444"),
        chardev("host=localhost,port=notaport"),
        chardev(&format!("host=127.0.0.1,port={busy}")),
        chardev("path=/nonexistent/x.sock"),
        chardev("path=$DIR"),
    ];
    for c in &cases {
        let (code, err) = cli_case(&["--chardev", c, "--monitor", "chardev=m"], false);
        assert_eq!(code, 1, "{c}: {err}");
    }
    let nbd = format!("addr.type=inet,addr.host=127.0.0.1,addr.port={busy}");
    let (code, err) = cli_case(&["--nbd-server", &nbd], false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Failed to find an available port"), "{err}");
    drop(held);
}
