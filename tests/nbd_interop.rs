//! libnbd's interop scenario with qemu-storage-daemon, run with our
//! binary: the test owns the listening socket and hands it to the daemon
//! as an inherited descriptor (`--nbd-server addr.type=fd,addr.str=N`),
//! the export has the empty name and its `--export` option gives the
//! type as the implied first key (`nbd,...`), and a libnbd client writes
//! and reads back through it. The same scenario runs against
//! qemu-storage-daemon so the two cannot drift apart.

// Needs the NBD backend.
#![cfg(feature = "nbd")]

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use common::{QSD, TempDir, create_image, nbdsh_script, tool_ok};

const SCRIPT: &str = r#"
import sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("name: %r" % h.get_export_name())
print("size: %d" % h.get_size())
buf = b"interop!" * 512
h.pwrite(buf, 512)
h.flush()
print("read back: %s" % (h.pread(len(buf), 512) == buf))
h.shutdown()
"#;

fn scenario(bin: &str) {
    let dir = TempDir::new("nbd-interop");
    let img = dir.join("disk.img");
    create_image(&img, "10M");
    let sock = dir.join("nbd.sock");
    let listener = UnixListener::bind(&sock).expect("bind the test's socket");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--blockdev",
        &format!("driver=file,node-name=disk0,filename={img}"),
        "--nbd-server",
        &format!("addr.type=fd,addr.str={fd}"),
        "--export",
        "nbd,id=export0,node-name=disk0,name=,writable=on",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    common::inherit_fd(&mut cmd, fd);
    let mut child = common::Daemon {
        child: cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}")),
        qmp_path: None,
    };
    // The daemon has its own copy; ours can go. Connections queue in the
    // backlog until the daemon accepts them.
    drop(listener);

    let uri = format!("nbd+unix:///?socket={sock}");
    let (code, out, err) = nbdsh_script(SCRIPT, &[&uri]);
    assert!(child.is_running(), "{bin} exited: {:?}", child.wait());
    assert_eq!(code, 0, "{bin}: {out}{err}");
    assert!(out.contains("name: ''"), "{bin}: {out}");
    assert!(out.contains("size: 10485760"), "{bin}: {out}");
    assert!(out.contains("read back: True"), "{bin}: {out}");

    // The listing shows the one export with the empty name.
    let list = tool_ok(Command::new("nbdinfo").args(["--list", "--json", &uri]));
    let v: serde_json::Value = serde_json::from_str(&list).expect("nbdinfo --list --json");
    let names: Vec<&str> = v["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter_map(|e| e["export-name"].as_str())
        .collect();
    assert_eq!(names, [""], "{bin}: {list}");

    // What was written is in the image.
    let data = std::fs::read(&img).expect("read image");
    assert_eq!(&data[512..520], b"interop!", "{bin}");
}

#[test]
fn inherited_socket_empty_name_implied_type_ours() {
    scenario(common::OURS);
}

#[test]
fn inherited_socket_empty_name_implied_type_qsd() {
    common::require(QSD);
    scenario(QSD);
}
