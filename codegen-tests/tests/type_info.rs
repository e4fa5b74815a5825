//! The generated `type_info()`: every type under its real name, with the
//! conditions of the build applied like those of `qmp_schema()`.

use serde_json::{Value, json};

fn entry<'a>(all: &'a Value, name: &str) -> Option<&'a Value> {
    all.as_array()?.iter().find(|e| e["name"] == name)
}

/// Every type name an entry refers to has an entry of its own.
fn assert_closed(all: &Value) {
    let all = all.as_array().expect("array");
    let names: std::collections::HashSet<&str> =
        all.iter().filter_map(|e| e["name"].as_str()).collect();
    for e in all {
        let mut refs: Vec<&str> = e["element-type"].as_str().into_iter().collect();
        for key in ["members", "variants"] {
            for m in e[key].as_array().into_iter().flatten() {
                refs.extend(m["type"].as_str());
            }
        }
        for r in refs {
            assert!(names.contains(r), "{r} (in {}) has no entry", e["name"]);
        }
    }
}

#[test]
fn conditions_apply_to_type_info() {
    // CONFIG_MODE is on; CONFIG_B, CONFIG_SETTINGS and CONFIG_QUIET are off.
    let all = codegen_tests::ok::conditions::type_info();
    assert_closed(all);
    let mode = entry(all, "Mode").expect("Mode");
    assert_eq!(mode["values"], json!(["a"]));
    assert!(entry(all, "Settings").is_none());
    assert_eq!(
        entry(all, "ModeOrCount").expect("ModeOrCount")["members"],
        json!([{ "type": "Mode" }, { "type": "int" }])
    );
    assert_eq!(entry(all, "Choice").expect("Choice")["variants"], json!([]));
    assert!(entry(all, "q_obj_CONFIGURED-arg").is_some());
    assert!(
        all.as_array()
            .expect("array")
            .iter()
            .all(|e| e["meta-type"] != "command")
    );
}

#[test]
fn daemon_type_info_has_the_command_line_types() {
    let all = codegen_tests::daemon::type_info();
    assert_closed(all);
    for name in ["BlockdevOptions", "BlockExportOptions", "BlockdevRef"] {
        assert!(entry(all, name).is_some(), "{name}");
    }
    // `--nbd-server`'s type is NBD's, under CONFIG_NBD (off here).
    assert_eq!(
        entry(all, "NbdServerOptions").is_some(),
        cfg!(daemon_cond = "CONFIG_NBD")
    );
}

#[cfg(have_shared)]
#[test]
fn qemu_type_info_follows_the_debian_configuration() {
    let all = codegen_tests::qemu10::type_info();
    assert_closed(all);
    let export_types = &entry(all, "BlockExportType").expect("BlockExportType")["values"];
    assert_eq!(
        export_types,
        &json!(["nbd", "vhost-user-blk", "fuse", "vduse-blk"])
    );
    // CONFIG_BLKIO is off: no virtio-blk-vfio-pci driver.
    let drivers = &entry(all, "BlockdevDriver").expect("BlockdevDriver")["values"];
    assert!(
        drivers
            .as_array()
            .expect("array")
            .iter()
            .all(|d| d != "virtio-blk-vfio-pci")
    );
    assert_eq!(
        entry(all, "NbdServerOptions").expect("NbdServerOptions")["members"][3],
        json!({ "name": "max-connections", "type": "uint32", "default": null })
    );
}
