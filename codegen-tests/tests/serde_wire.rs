//! What generated types look like on the wire: QMP's JSON, exactly.

mod common;

use codegen_tests::ok;
use common::{decode, encode, reject, round_trip};
use serde_json::{Value, json};

/// The member names of an encoded object, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

mod structs {
    use super::*;
    use ok::structs::{Anything, Colour, Nothing, Point, Polygon, Shape, Triangle};

    #[test]
    fn optional_members_are_omitted_when_absent() {
        let p = Polygon {
            name: "tri".into(),
            colour: None,
            outline: vec![Point { x: 0, y: 0 }, Point { x: 1, y: -1 }],
            tags: None,
            sides: 3,
            filled: None,
            legacy_name: None,
        };
        let v = encode(&p);
        assert_eq!(
            v,
            json!({"name": "tri", "outline": [{"x": 0, "y": 0}, {"x": 1, "y": -1}], "sides": 3})
        );
        assert_eq!(decode::<Polygon>(v), p);
        // Members in schema order, base members first, wire names.
        let full = json!({"name": "sq", "colour": "green", "outline": [], "tags": ["a"],
                          "sides": 4, "filled": true, "legacy-name": "square"});
        let p: Polygon = round_trip(full.clone());
        assert_eq!(p.colour, Some(Colour::Green));
        assert_eq!(p.legacy_name.as_deref(), Some("square"));
        assert_eq!(
            keys(&encode(&p)),
            [
                "name",
                "colour",
                "outline",
                "tags",
                "sides",
                "filled",
                "legacy-name"
            ]
        );
        assert_eq!(round_trip::<Nothing>(json!({})), Nothing {});
    }

    #[test]
    fn unknown_and_missing_members_are_rejected() {
        let ok = json!({"name": "n", "outline": [], "sides": 3});
        decode::<Polygon>(ok);
        let e = reject::<Polygon>(json!({"name": "n", "outline": [], "sides": 3, "bogus": 1}));
        assert!(e.contains("unknown field `bogus`"), "{e}");
        // The member's Rust name is not its wire name.
        reject::<Polygon>(json!({"name": "n", "outline": [], "sides": 3, "legacy_name": "x"}));
        let e = reject::<Polygon>(json!({"name": "n", "outline": []}));
        assert!(e.contains("missing field `sides`"), "{e}");
        reject::<Nothing>(json!({"x": 1}));
        reject::<Point>(json!("1,2"));
        // QMP has no positional form: an array of member values is refused
        // (serde's derive alone would take it), also nested and in unions.
        let e = reject::<Point>(json!([1, 2]));
        assert!(e.contains("invalid type: sequence"), "{e}");
        reject::<Polygon>(json!({"name": "n", "outline": [[0, 0]], "sides": 3}));
        // Members whose condition is off do not exist: CONFIG_AREA is off,
        // and so are both conditions of Triangle's 'weights'.
        reject::<Polygon>(json!({"name": "n", "outline": [], "sides": 3, "area": 1.5}));
        decode::<Triangle>(json!({"name": "t", "outline": [], "sides": 3, "right-angled": true}));
        reject::<Triangle>(
            json!({"name": "t", "outline": [], "sides": 3, "right-angled": true,
                                  "weights": [1]}),
        );
    }

    #[test]
    fn null_is_not_absent() {
        // QEMU rejects null for an optional member that is not nullable;
        // serde's Option would take it for "absent".
        let e = reject::<Polygon>(json!({"name": "n", "outline": [], "sides": 3, "filled": null}));
        assert!(e.contains("invalid type: null"), "{e}");
        reject::<Shape>(json!({"name": "n", "outline": [], "colour": null}));
        // 'null' itself is a type: its only value is null.
        let a: Anything = round_trip(json!({"payload": null, "nothing": null, "sizes": [],
                                            "small": 0, "big": 0, "ratio": 0.5}));
        assert_eq!(a.nothing, Some(()));
        assert_eq!(a.payload, Value::Null);
    }

    #[test]
    fn integers_are_range_checked() {
        let polygon = |sides: Value| json!({"name": "n", "outline": [], "sides": sides});
        assert_eq!(decode::<Polygon>(polygon(json!(255))).sides, 255);
        for bad in [json!(256), json!(300), json!(-1), json!(1.5), json!("3")] {
            reject::<Polygon>(polygon(bad));
        }
        let anything = |small: Value, big: Value| {
            json!({"payload": {"any": ["thing"]}, "sizes": [0, u64::MAX], "small": small,
                   "big": big, "ratio": 2})
        };
        let a: Anything = decode(anything(json!(-32768), json!(u64::MAX)));
        assert_eq!((a.small, a.big, a.sizes[1]), (i16::MIN, u64::MAX, u64::MAX));
        assert_eq!(a.ratio, 2.0);
        assert_eq!(a.payload, json!({"any": ["thing"]}));
        reject::<Anything>(anything(json!(32768), json!(0)));
        reject::<Anything>(anything(json!(0), json!(-1)));
        reject::<Point>(json!({"x": 9_223_372_036_854_775_808u64, "y": 0}));
    }
}

mod enums {
    use super::*;
    use ok::enums::{Direction, LegacyMode, Resolution, Unit};

    #[test]
    fn values_use_qapi_names() {
        assert_eq!(round_trip::<Direction>(json!("north")), Direction::North);
        assert_eq!(round_trip::<Unit>(json!("x-furlong")), Unit::XFurlong);
        assert_eq!(
            round_trip::<Unit>(json!("__com.example_cubit")),
            Unit::ComExampleCubit
        );
        assert_eq!(round_trip::<Resolution>(json!("720p")), Resolution::N720p);
        assert_eq!(
            round_trip::<LegacyMode>(json!("Fast_Mode")),
            LegacyMode::FastMode
        );
        assert_eq!(Unit::XFurlong.as_str(), "x-furlong");
        assert_eq!(Resolution::N1080p.to_string(), "1080p");
        // Rust names and other spellings are not QAPI names.
        reject::<Direction>(json!("North"));
        reject::<Unit>(json!("XFurlong"));
        reject::<Direction>(json!(0));
        // serde's derive would take this for the value 'north'.
        reject::<Direction>(json!({"north": null}));
        let e = reject::<Direction>(json!("up"));
        assert!(
            e.contains("unknown variant `up`, expected one of `north`"),
            "{e}"
        );
        assert_eq!(Direction::VALUES, ["north", "east", "south", "west"]);
        assert_eq!(Direction::from_name("west"), Some(Direction::West));
        assert_eq!(Direction::from_name("West"), None);
    }

    #[test]
    fn conditional_values_exist_only_when_on() {
        // CONFIG_UHD on, CONFIG_FAST_GPU off, CONFIG_NTSC_ONLY off.
        assert_eq!(round_trip::<Resolution>(json!("4k")), Resolution::N4k);
        assert_eq!(round_trip::<Resolution>(json!("pal")), Resolution::Pal);
        reject::<Resolution>(json!("8k"));
        assert_eq!(Resolution::VALUES, ["720p", "1080p", "4k", "pal", "cga"]);
        assert!(ok::enums::Empty::VALUES.is_empty());
        reject::<ok::enums::Empty>(json!("anything"));
    }
}

mod unions {
    use super::*;
    use ok::unions::{Cat, Dog, Outer, OuterBranch, Parrot, Pet, PetBranch, PetKind};

    #[test]
    fn flat_on_the_wire() {
        let pet = Pet {
            name: "Rex".into(),
            age: Some(3),
            branch: PetBranch::Dog(Dog {
                breed: "lab".into(),
                good: Some(true),
            }),
        };
        let v = encode(&pet);
        assert_eq!(
            v,
            json!({"kind": "dog", "name": "Rex", "age": 3, "breed": "lab", "good": true})
        );
        // Base members (the tag among them) in order, then the branch's.
        assert_eq!(keys(&v), ["kind", "name", "age", "breed", "good"]);
        assert_eq!(decode::<Pet>(v), pet);
        assert_eq!(pet.kind(), PetKind::Dog);

        let cat: Pet = round_trip(json!({"kind": "cat", "name": "Tom", "lives": 9}));
        assert_eq!(cat.branch, PetBranch::Cat(Cat { lives: 9 }));
        assert_eq!(cat.age, None);
        // A branch without members; one whose condition (CONFIG_BIRDS) is on.
        let fish: Pet = round_trip(json!({"kind": "fish", "name": "Nemo"}));
        assert_eq!(fish.branch, PetBranch::Fish);
        let parrot: Pet = round_trip(json!({"kind": "parrot", "name": "Polly", "words": ["hi"]}));
        assert_eq!(
            parrot.branch,
            PetBranch::Parrot(Parrot {
                words: vec!["hi".into()]
            })
        );
    }

    #[test]
    fn wrong_tags_and_members_are_rejected() {
        // No such tag value, no tag, a tag that is not a string.
        reject::<Pet>(json!({"kind": "bird", "name": "x"}));
        reject::<Pet>(json!({"name": "x", "lives": 1}));
        reject::<Pet>(json!({"kind": 1, "name": "x"}));
        // Members of another branch, also next to the right ones.
        let e = reject::<Pet>(json!({"kind": "cat", "name": "x", "breed": "lab"}));
        assert!(e.contains("breed"), "{e}");
        reject::<Pet>(json!({"kind": "cat", "name": "x", "lives": 1, "breed": "lab"}));
        reject::<Pet>(json!({"kind": "fish", "name": "x", "lives": 1}));
        // Unknown members, missing base members, null for optional ones.
        reject::<Pet>(json!({"kind": "cat", "name": "x", "lives": 1, "colour": "red"}));
        reject::<Pet>(json!({"kind": "cat", "lives": 1}));
        reject::<Pet>(json!({"kind": "cat", "name": "x", "age": null, "lives": 1}));
        reject::<Pet>(json!({"kind": "cat", "name": "x", "age": "old", "lives": 1}));
        reject::<Pet>(json!("cat"));
    }

    #[test]
    fn union_as_branch() {
        let v = json!({"level": "top", "kind": "cat", "name": "Tom", "lives": 9});
        let o: Outer = round_trip(v);
        let OuterBranch::Top(pet) = &o.branch;
        assert_eq!(pet.kind(), PetKind::Cat);
        reject::<Outer>(json!({"level": "top", "kind": "cat", "name": "Tom"}));
    }

    #[test]
    fn branches_whose_condition_is_off() {
        use ok::conditions::{Choice, Mode};
        // CONFIG_MODE is on, CONFIG_SETTINGS (branch 'a') and CONFIG_B
        // (value 'b') are off: no branch is left.
        assert_eq!(round_trip::<Mode>(json!("a")), Mode::A);
        reject::<Mode>(json!("b"));
        let e = reject::<Choice>(json!({"mode": "a"}));
        assert!(e.contains("not available in this build"), "{e}");
        reject::<Choice>(json!({"mode": "b"}));
    }
}

mod alternates {
    use super::*;
    use ok::alternates::{Custom, NameOrNull, Preset, Setting, SizeOrStrings, UsesAlternates};

    #[test]
    fn json_type_picks_the_branch() {
        assert_eq!(
            round_trip::<Setting>(json!("fast")),
            Setting::Preset(Preset::Fast)
        );
        assert_eq!(
            round_trip::<Setting>(json!({"rate": 5})),
            Setting::Custom(Custom { rate: 5 })
        );
        assert_eq!(round_trip::<Setting>(json!(5)), Setting::Rate(5));
        assert_eq!(round_trip::<Setting>(json!(true)), Setting::Enabled(true));
        assert_eq!(
            round_trip::<Setting>(json!([{"rate": 1}])),
            Setting::Steps(vec![Custom { rate: 1 }])
        );
        // Within the branch the JSON type picks, the value must fit.
        reject::<Setting>(json!("medium"));
        reject::<Setting>(json!({"rate": "fast"}));
        reject::<Setting>(json!(1.5));
        // The null branch's condition (CONFIG_NULLABLE) is off.
        reject::<Setting>(json!(null));

        assert_eq!(round_trip::<NameOrNull>(json!(null)), NameOrNull::None(()));
        assert_eq!(
            round_trip::<NameOrNull>(json!("n")),
            NameOrNull::Name("n".into())
        );
        reject::<NameOrNull>(json!(1));

        assert_eq!(
            round_trip::<SizeOrStrings>(json!(7)),
            SizeOrStrings::Size(7)
        );
        assert_eq!(
            round_trip::<SizeOrStrings>(json!(["a"])),
            SizeOrStrings::List(vec!["a".into()])
        );
        reject::<SizeOrStrings>(json!(-1));
        reject::<SizeOrStrings>(json!([1]));
        reject::<SizeOrStrings>(json!({}));
    }

    #[test]
    fn null_branch_of_an_optional_member() {
        // A present null is the alternate's null branch, not absence.
        let u: UsesAlternates =
            round_trip(json!({"setting": 1, "name": null, "many": ["slow", 2]}));
        assert_eq!(u.name, Some(NameOrNull::None(())));
        assert_eq!(u.many, [Setting::Preset(Preset::Slow), Setting::Rate(2)]);
        let u: UsesAlternates = round_trip(json!({"setting": 1, "many": []}));
        assert_eq!(u.name, None);
    }
}

mod names {
    use super::*;
    use ok::names::{ComExampleFlavour, ComExampleXSundae, OrgExampleScoopOrCount};

    #[test]
    fn experimental_and_downstream_names() {
        let v = json!({"flavour": "__com.example_x-lime", "x-sprinkles": false,
                       "__com.example_cone": "waffle", "__org.example-shop_x-topping": "nuts",
                       "cherries": 2});
        let s: ComExampleXSundae = round_trip(v.clone());
        assert_eq!(s.flavour, ComExampleFlavour::ComExampleXLime);
        assert_eq!(s.__com_example_cone, "waffle");
        let alt: OrgExampleScoopOrCount = round_trip(json!(4));
        assert_eq!(alt, OrgExampleScoopOrCount::XCount(4));
    }
}

/// QEMU's own types, with real `blockdev-add` and `block-export-add`
/// arguments.
#[cfg(have_shared)]
mod qemu {
    use super::*;
    use codegen_tests::qemu10::{
        BlockExportOptions, BlockExportOptionsBranch, BlockdevDriver, BlockdevOptions,
        BlockdevOptionsBranch, BlockdevRef, BlockdevRefOrNull,
    };

    #[test]
    fn blockdev_ref_definition_is_boxed_recursion() {
        let v = json!({"driver": "qcow2", "node-name": "n",
                       "file": {"driver": "file", "filename": "/tmp/x"}});
        let opts: BlockdevOptions = round_trip(v);
        assert_eq!(opts.driver(), BlockdevDriver::Qcow2);
        assert_eq!(opts.node_name.as_deref(), Some("n"));
        let BlockdevOptionsBranch::Qcow2(qcow2) = &opts.branch else {
            panic!("not qcow2: {opts:?}");
        };
        let BlockdevRef::Definition(file) = &*qcow2.file else {
            panic!("not a definition: {:?}", qcow2.file);
        };
        let BlockdevOptionsBranch::File(f) = &file.branch else {
            panic!("not a file: {file:?}");
        };
        assert_eq!(f.filename, "/tmp/x");
        assert_eq!(file.node_name, None);
    }

    #[test]
    fn blockdev_ref_reference_and_null() {
        let opts: BlockdevOptions = round_trip(json!({"driver": "raw", "file": "other-node"}));
        let BlockdevOptionsBranch::Raw(raw) = &opts.branch else {
            panic!("not raw: {opts:?}");
        };
        assert_eq!(*raw.file, BlockdevRef::Reference("other-node".into()));

        // "backing": null (no backing file) is not the same as no
        // "backing" (open the image's backing file).
        let with_null: BlockdevOptions =
            round_trip(json!({"driver": "qcow2", "file": "f", "backing": null}));
        let BlockdevOptionsBranch::Qcow2(q) = &with_null.branch else {
            panic!("not qcow2");
        };
        assert!(matches!(
            q.backing.as_deref(),
            Some(BlockdevRefOrNull::Null(()))
        ));
        let without: BlockdevOptions = round_trip(json!({"driver": "qcow2", "file": "f"}));
        assert_ne!(with_null, without);

        // Members of other drivers, unknown drivers, drivers compiled out.
        reject::<BlockdevOptions>(json!({"driver": "raw", "file": "f", "filename": "/x"}));
        reject::<BlockdevOptions>(json!({"driver": "nope", "file": "f"}));
        reject::<BlockdevOptions>(json!({"driver": "virtio-blk-vfio-pci", "path": "/x"}));
        reject::<BlockdevOptions>(json!({"driver": "raw", "file": 1}));
        reject::<BlockdevOptions>(json!({"driver": "qcow2", "file": {"driver": "file"}}));
    }

    #[test]
    fn block_export_add_arguments() {
        let v = json!({"type": "vhost-user-blk", "id": "e", "node-name": "n", "writable": true,
                       "addr": {"type": "unix", "path": "/tmp/vhost.sock"}, "num-queues": 4});
        let e: BlockExportOptions = round_trip(v.clone());
        let BlockExportOptionsBranch::VhostUserBlk(vu) = &e.branch else {
            panic!("not vhost-user-blk: {e:?}");
        };
        assert_eq!(vu.num_queues, Some(4));
        let mut too_many = v;
        too_many["num-queues"] = json!(70000);
        reject::<BlockExportOptions>(too_many);
        round_trip::<BlockExportOptions>(json!({"type": "nbd", "id": "e", "node-name": "n",
                                                "name": "disk"}));
    }
}
