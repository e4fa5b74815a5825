//! The qemu-storage-daemon command line: the same options, syntax, order
//! of effects and error messages as qemu-storage-daemon 10.0.
//!
//! ```text
//! storage-daemon --chardev socket,id=m,path=/tmp/qmp.sock,server=on,wait=off \
//!     --monitor chardev=m \
//!     --blockdev file,node-name=disk,filename=disk.img \
//!     --nbd-server addr.type=unix,addr.path=/tmp/nbd.sock \
//!     --export nbd,id=e,node-name=disk,writable=on
//! ```
//!
//! How qsd reads it, and so how this module does:
//!
//! 1. getopt (`-hT:V` and the long options, which may be abbreviated and
//!    take `--opt value` or `--opt=value`). A first pass handles `-h`,
//!    `-V` and getopt errors: the first of them on the line wins, before
//!    anything else happens.
//! 2. A second pass takes the options in order; each takes effect before
//!    the next is parsed, so a daemon reports a bad fourth option only
//!    after the first three took effect. [`CommandLine::options`] yields
//!    them one at a time for that; [`parse_args`] collects them.
//! 3. `--blockdev`, `--export`, `--nbd-server`, `--monitor` and `--object`
//!    use QEMU's keyval syntax (`keyval.rs`) with an implied first key
//!    (`driver`, `type`, none, `chardev`, `qom-type`), or JSON when the
//!    argument starts with `{` (`json.rs`); the tree is converted by target
//!    type with the daemon's type information (`convert.rs`, [`TypeInfo`])
//!    and then decoded into the generated QAPI types.
//! 4. `--chardev` uses QemuOpts syntax (`chardev.rs`).
//!
//! Errors ([`CliError`]) print as `LOCATION: MESSAGE`, the location being
//! the option as given (`--blockdev null-co,foo=1`); the caller prefixes
//! the program name, as QEMU does:
//! `storage-daemon: --blockdev null-co,foo=1: Parameter 'foo' is unexpected`.

mod chardev;
mod convert;
mod keyval;
mod numbers;
mod types;

pub use chardev::{ChardevAddr, ChardevBackend, ChardevSpec, SocketChardev, parse_fd};
pub use convert::TypeInfo;

use convert::Form;

use serde_json::{Map, Value};

use crate::qemu_json::{json, order};

use crate::qapi;

/// A command line qemu-storage-daemon would refuse, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// Refused by getopt: `unrecognized option '--foo'`, `option
    /// '--blockdev' requires an argument`, `invalid option -- 'x'`, ...
    #[error("{0}")]
    Usage(String),
    /// An option (or a stray argument) was refused. The message may have
    /// further lines (hints), printed as they are.
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

impl CliError {
    fn invalid(location: &str, message: impl Into<String>) -> CliError {
        CliError::Invalid {
            location: location.to_string(),
            message: message.into(),
        }
    }
}

/// A generated QAPI type an option converts to.
pub trait CliType: serde::de::DeserializeOwned {
    /// The type's name in the schema (and in `type_info()`).
    const QAPI_NAME: &'static str;
}

impl CliType for qapi::BlockdevOptions {
    const QAPI_NAME: &'static str = "BlockdevOptions";
}

impl CliType for qapi::BlockExportOptions {
    const QAPI_NAME: &'static str = "BlockExportOptions";
}

#[cfg(feature = "nbd")]
impl CliType for qapi::NbdServerOptions {
    const QAPI_NAME: &'static str = "NbdServerOptions";
}

/// An option whose argument is a QAPI type (`--blockdev`, `--export`,
/// `--nbd-server`).
#[derive(Debug, Clone, PartialEq)]
pub struct QapiOption<T> {
    /// The option as given: the prefix of QEMU's messages about it, e.g.
    /// when the node it describes cannot be opened.
    pub location: String,
    /// The argument in QMP form: what `blockdev-add`, `block-export-add`
    /// or `nbd-server-start` would receive (keyval strings converted).
    pub json: Map<String, Value>,
    /// The same, decoded.
    pub value: T,
}

impl<T: CliType> QapiOption<T> {
    fn decode(location: String, json: Map<String, Value>) -> Result<Self, CliError> {
        let value = qapi_rt::from_args(json.clone()).map_err(|e| CliError::Invalid {
            location: location.clone(),
            message: e.desc,
        })?;
        Ok(QapiOption {
            location,
            json,
            value,
        })
    }
}

/// `--monitor`'s monitor mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// HMP; qsd refuses it ("Only QMP is supported") once the chardev is
    /// found.
    Readline,
    /// QMP, the default.
    Control,
}

/// A monitor to open, as `--monitor [chardev=]ID[,mode=control][,pretty=on]`
/// describes it (QEMU's `MonitorOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    pub location: String,
    pub id: Option<String>,
    /// The chardev to run on (qsd: `chardev "ID" not found` if none).
    pub chardev: String,
    pub mode: MonitorMode,
    pub pretty: bool,
}

/// An object to create, as `--object TYPE,id=ID[,PROP=VALUE...]`
/// describes it (QEMU's `ObjectOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    pub location: String,
    /// `iothread`: the only type the daemon creates.
    pub qom_type: String,
    pub id: String,
    /// The type's properties, converted (`"poll-max-ns": 32768`), in the
    /// order QEMU sets them.
    pub props: Map<String, Value>,
}

/// One option of the command line, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum CliOption {
    /// `-h`/`--help`: print [`help_text`], exit 0. When present it is the
    /// only option returned.
    Help,
    /// `-V`/`--version`: print [`version_text`], exit 0. When present it is
    /// the only option returned.
    Version,
    /// `--daemonize`. qsd acts on it before any other option, wherever it
    /// stands (fork now, the parent exits once startup is complete).
    Daemonize,
    /// `--pidfile PATH`: written once every option took effect, before
    /// connections are accepted (qsd: "cannot create PID file: ...").
    /// Like `--daemonize`, qsd reads it before other options.
    Pidfile(String),
    /// `-T`/`--trace SPEC`. This daemon has no trace events; qsd warns
    /// `LOCATION: warning: trace event 'X' does not exist` for unknown ones.
    Trace {
        location: String,
        spec: String,
    },
    Blockdev(Box<QapiOption<qapi::BlockdevOptions>>),
    Export(Box<QapiOption<qapi::BlockExportOptions>>),
    /// Only with the `nbd` feature: without it `--nbd-server` is an
    /// unrecognized option, as `nbd-server-start` is an unknown command.
    #[cfg(feature = "nbd")]
    NbdServer(Box<QapiOption<qapi::NbdServerOptions>>),
    Chardev(Box<ChardevSpec>),
    Monitor(MonitorSpec),
    Object(ObjectSpec),
    /// Help asked for within an option (`--chardev help`, `--object help`,
    /// `--object iothread,help`): print `text` on standard output and exit
    /// with `status`, once the options before it took effect.
    PrintHelp {
        text: String,
        status: i32,
    },
}

/// What getopt returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Help,
    Version,
    Trace,
    Blockdev,
    Chardev,
    Daemonize,
    Export,
    Monitor,
    #[cfg(feature = "nbd")]
    NbdServer,
    Object,
    Pidfile,
    /// A non-option argument ("Unexpected argument").
    Argument,
}

/// qsd's long options: name, meaning, whether it takes an argument.
const LONG_OPTIONS: &[(&str, Opt, bool)] = &[
    ("blockdev", Opt::Blockdev, true),
    ("chardev", Opt::Chardev, true),
    ("daemonize", Opt::Daemonize, false),
    ("export", Opt::Export, true),
    ("help", Opt::Help, false),
    ("monitor", Opt::Monitor, true),
    #[cfg(feature = "nbd")]
    ("nbd-server", Opt::NbdServer, true),
    ("object", Opt::Object, true),
    ("pidfile", Opt::Pidfile, true),
    ("trace", Opt::Trace, true),
    ("version", Opt::Version, false),
];

/// One option as getopt split it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawOption {
    opt: Opt,
    arg: String,
    /// The arguments it came from, joined with spaces.
    location: String,
}

/// getopt_long() with `-hT:V` (the leading `-` of qsd's `-hT:V` returns
/// non-options in place): every option up to the first error, and the
/// error. `--` ends the options; what follows it is ignored, as in qsd.
fn getopt(args: &[String]) -> (Vec<RawOption>, Option<CliError>) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let found = match LONG_OPTIONS.iter().find(|(n, _, _)| *n == name) {
                Some(&o) => o,
                None => {
                    let matches: Vec<_> = LONG_OPTIONS
                        .iter()
                        .filter(|(n, _, _)| n.starts_with(name))
                        .collect();
                    match matches.as_slice() {
                        [] => {
                            return (
                                out,
                                Some(CliError::Usage(format!("unrecognized option '{a}'"))),
                            );
                        }
                        [one] => **one,
                        many => {
                            let names: Vec<String> =
                                many.iter().map(|(n, _, _)| format!("'--{n}'")).collect();
                            let msg = format!(
                                "option '{a}' is ambiguous; possibilities: {}",
                                names.join(" ")
                            );
                            return (out, Some(CliError::Usage(msg)));
                        }
                    }
                }
            };
            let (full, opt, has_arg) = found;
            let (arg, location) = match (has_arg, inline) {
                (false, Some(_)) => {
                    let msg = format!("option '--{full}' doesn't allow an argument");
                    return (out, Some(CliError::Usage(msg)));
                }
                (false, None) => (String::new(), a.clone()),
                (true, Some(v)) => (v.to_string(), a.clone()),
                (true, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        (v.clone(), format!("{a} {v}"))
                    }
                    None => {
                        let msg = format!("option '--{full}' requires an argument");
                        return (out, Some(CliError::Usage(msg)));
                    }
                },
            };
            out.push(RawOption { opt, arg, location });
        } else if a.len() > 1 && a.starts_with('-') {
            // A cluster of short options.
            let cluster = &a[1..];
            for (pos, c) in cluster.char_indices() {
                let opt = match c {
                    'h' => Opt::Help,
                    'V' => Opt::Version,
                    'T' => Opt::Trace,
                    _ => {
                        return (
                            out,
                            Some(CliError::Usage(format!("invalid option -- '{c}'"))),
                        );
                    }
                };
                if opt != Opt::Trace {
                    out.push(RawOption {
                        opt,
                        arg: String::new(),
                        location: a.clone(),
                    });
                    continue;
                }
                let rest = &cluster[pos + 1..];
                let (arg, location) = if !rest.is_empty() {
                    (rest.to_string(), a.clone())
                } else if let Some(v) = args.get(i) {
                    i += 1;
                    (v.clone(), format!("{a} {v}"))
                } else {
                    let msg = "option requires an argument -- 'T'".to_string();
                    return (out, Some(CliError::Usage(msg)));
                };
                out.push(RawOption { opt, arg, location });
                break;
            }
        } else {
            out.push(RawOption {
                opt: Opt::Argument,
                arg: a.clone(),
                location: a.clone(),
            });
        }
    }
    (out, None)
}

/// A command line after qsd's first pass.
#[derive(Debug, Clone)]
pub struct CommandLine {
    raw: Vec<RawOption>,
    early: Option<CliOption>,
}

impl CommandLine {
    /// The first pass: getopt errors, `-h` and `-V`, whichever comes first.
    /// `args` excludes the program name.
    pub fn parse(args: &[String]) -> Result<CommandLine, CliError> {
        let (raw, error) = getopt(args);
        for r in &raw {
            let early = match r.opt {
                Opt::Help => CliOption::Help,
                Opt::Version => CliOption::Version,
                _ => continue,
            };
            return Ok(CommandLine {
                raw: Vec::new(),
                early: Some(early),
            });
        }
        if let Some(e) = error {
            return Err(e);
        }
        Ok(CommandLine { raw, early: None })
    }

    /// `Help` or `Version` if the command line asks for it; then nothing
    /// else is to be done.
    pub fn early_exit(&self) -> Option<&CliOption> {
        self.early.as_ref()
    }

    /// Whether `--daemonize` is given (anywhere).
    pub fn daemonize(&self) -> bool {
        self.raw.iter().any(|r| r.opt == Opt::Daemonize)
    }

    /// The last `--pidfile`, if any.
    pub fn pidfile(&self) -> Option<&str> {
        self.raw
            .iter()
            .rev()
            .find(|r| r.opt == Opt::Pidfile)
            .map(|r| r.arg.as_str())
    }

    /// The second pass: every option in order, each parsed when the
    /// iterator reaches it. The first error ends the command line.
    pub fn options(&self) -> impl Iterator<Item = Result<CliOption, CliError>> + '_ {
        self.options_with(TypeInfo::daemon())
    }

    fn options_with<'a>(
        &'a self,
        types: &'a TypeInfo,
    ) -> impl Iterator<Item = Result<CliOption, CliError>> + 'a {
        self.raw
            .iter()
            .map(move |r| convert_option(r, types)?.finish())
    }
}

/// Parses a whole command line (without the program name). `Help` or
/// `Version` come alone; otherwise every option in order, or the first
/// error.
pub fn parse_args(args: &[String]) -> Result<Vec<CliOption>, CliError> {
    let cl = CommandLine::parse(args)?;
    if let Some(e) = cl.early {
        return Ok(vec![e]);
    }
    cl.options().collect()
}

/// An option converted as far as type information goes: QAPI arguments
/// are still JSON.
#[derive(Debug, Clone, PartialEq)]
enum Converted {
    Blockdev(String, Map<String, Value>),
    Export(String, Map<String, Value>),
    #[cfg(feature = "nbd")]
    NbdServer(String, Map<String, Value>),
    Done(CliOption),
}

impl Converted {
    /// Decodes QAPI arguments into the generated types.
    fn finish(self) -> Result<CliOption, CliError> {
        Ok(match self {
            Converted::Blockdev(l, j) => CliOption::Blockdev(Box::new(QapiOption::decode(l, j)?)),
            Converted::Export(l, j) => CliOption::Export(Box::new(QapiOption::decode(l, j)?)),
            #[cfg(feature = "nbd")]
            Converted::NbdServer(l, j) => CliOption::NbdServer(Box::new(QapiOption::decode(l, j)?)),
            Converted::Done(o) => o,
        })
    }
}

/// Converts an option argument to the QMP form of the QAPI object type
/// `type_name`, as qsd's `qobject_input_visitor_new_str()` and
/// `visit_type_T()` do: JSON if it starts with `{`, else keyval syntax with
/// `implied_key` for a bare first value. The error is QEMU's message.
pub fn convert_arg(
    arg: &str,
    type_name: &str,
    implied_key: Option<&str>,
    types: &TypeInfo,
) -> Result<Map<String, Value>, String> {
    let (tree, form, _) = arg_tree(arg, implied_key, false)?;
    convert::convert(types, type_name, &tree, form)
}

/// An option's argument as a tree, as qsd reads it: JSON if it starts
/// with `{`, else keyval syntax with `implied_key` for a bare first
/// value. With `help`, keyval's `help` is taken (the flag says so);
/// without, it is an ordinary key.
fn arg_tree(
    arg: &str,
    implied_key: Option<&str>,
    help: bool,
) -> Result<(Map<String, Value>, Form, bool), String> {
    if arg.starts_with('{') {
        return match json::parse(arg)? {
            Value::Object(m) => Ok((m, Form::Json, false)),
            _ => unreachable!("a JSON text starting with '{{' is an object"),
        };
    }
    if help {
        let parsed = keyval::parse(arg, implied_key)?;
        Ok((parsed.tree, Form::Keyval, parsed.help))
    } else {
        Ok((
            keyval::parse_no_help(arg, implied_key)?,
            Form::Keyval,
            false,
        ))
    }
}

/// [`convert_arg`] with the daemon's types, decoded into `T`; errors
/// are located at `location` (the option as given).
pub fn parse_qapi<T: CliType>(
    location: &str,
    arg: &str,
    implied_key: Option<&str>,
) -> Result<QapiOption<T>, CliError> {
    let json = convert_arg(arg, T::QAPI_NAME, implied_key, TypeInfo::daemon())
        .map_err(|e| CliError::invalid(location, e))?;
    QapiOption::decode(location.to_string(), json)
}

fn qapi_arg(
    r: &RawOption,
    type_name: &str,
    implied_key: Option<&str>,
    types: &TypeInfo,
) -> Result<Map<String, Value>, CliError> {
    convert_arg(&r.arg, type_name, implied_key, types)
        .map_err(|e| CliError::invalid(&r.location, e))
}

fn convert_option(r: &RawOption, types: &TypeInfo) -> Result<Converted, CliError> {
    let loc = || r.location.clone();
    Ok(match r.opt {
        Opt::Blockdev => Converted::Blockdev(
            loc(),
            qapi_arg(r, "BlockdevOptions", Some("driver"), types)?,
        ),
        Opt::Export => Converted::Export(
            loc(),
            qapi_arg(r, "BlockExportOptions", Some("type"), types)?,
        ),
        #[cfg(feature = "nbd")]
        Opt::NbdServer => {
            Converted::NbdServer(loc(), qapi_arg(r, "NbdServerOptions", None, types)?)
        }
        Opt::Monitor => Converted::Done(CliOption::Monitor(monitor(r, types)?)),
        Opt::Object => Converted::Done(object(r, types)?),
        Opt::Chardev => Converted::Done(
            match chardev::parse(&r.location, &r.arg)
                .map_err(|e| CliError::invalid(&r.location, e))?
            {
                chardev::Chardev::Spec(s) => CliOption::Chardev(s),
                chardev::Chardev::Help { text, status } => CliOption::PrintHelp { text, status },
            },
        ),
        Opt::Daemonize => Converted::Done(CliOption::Daemonize),
        Opt::Pidfile => Converted::Done(CliOption::Pidfile(r.arg.clone())),
        Opt::Trace => Converted::Done(CliOption::Trace {
            location: loc(),
            spec: r.arg.clone(),
        }),
        Opt::Help => Converted::Done(CliOption::Help),
        Opt::Version => Converted::Done(CliOption::Version),
        Opt::Argument => return Err(CliError::invalid(&r.location, "Unexpected argument")),
    })
}

/// `--monitor`: `MonitorOptions` with the implied key `chardev`.
fn monitor(r: &RawOption, types: &TypeInfo) -> Result<MonitorSpec, CliError> {
    let m = qapi_arg(r, "MonitorOptions", Some("chardev"), types)?;
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(MonitorSpec {
        location: r.location.clone(),
        id: text("id"),
        chardev: text("chardev").unwrap_or_default(),
        // qsd allows no HMP, so QMP is the default.
        mode: match text("mode").as_deref() {
            Some("readline") => MonitorMode::Readline,
            _ => MonitorMode::Control,
        },
        pretty: m.get("pretty").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// `--object`: `user_creatable_process_cmdline()`.
fn object(r: &RawOption, types: &TypeInfo) -> Result<CliOption, CliError> {
    let invalid = |e: String| CliError::invalid(&r.location, e);
    let (tree, form, help) = arg_tree(&r.arg, Some("qom-type"), true).map_err(invalid)?;
    if help {
        return Ok(object_help(&tree, types));
    }
    let mut m = convert::convert(types, "ObjectOptions", &tree, form).map_err(invalid)?;
    let mut take = |k: &str| match m.remove(k) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let (qom_type, id) = (take("qom-type"), take("id"));
    if !chardev::id_wellformed(&id) {
        return Err(invalid(chardev::bad_id()));
    }
    // Properties are set in QDict order.
    let props: Map<String, Value> = order::qdict_order(m.keys().map(String::as_str))
        .into_iter()
        .filter_map(|k| Some((k.to_string(), m.get(k)?.clone())))
        .collect();
    if qom_type == "iothread" {
        check_iothread(&props).map_err(invalid)?;
    }
    Ok(CliOption::Object(ObjectSpec {
        location: r.location.clone(),
        qom_type,
        id,
        props,
    }))
}

/// What QEMU's iothread property setters and completion refuse.
fn check_iothread(props: &Map<String, Value>) -> Result<(), String> {
    for (name, v) in props {
        if v.as_i64().is_some_and(|v| v < 0) {
            return Err(format!("{name} value must be in range [0, {}]", i64::MAX));
        }
    }
    let get = |k: &str, default: i64| props.get(k).and_then(Value::as_i64).unwrap_or(default);
    let (min, max) = (get("thread-pool-min", 0), get("thread-pool-max", 64));
    let int_max = i64::from(i32::MAX);
    if min > max || max <= 0 || min < 0 || min > int_max || max > int_max {
        return Err("bad thread-pool-min/thread-pool-max values".into());
    }
    Ok(())
}

/// `--object help`, `--object TYPE,help`.
fn object_help(tree: &Map<String, Value>, types: &TypeInfo) -> CliOption {
    let object_types: Vec<&str> = types
        .get("ObjectType")
        .and_then(|e| e["values"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let wanted = tree.get("qom-type").and_then(Value::as_str);
    let branch = wanted.filter(|t| object_types.contains(t)).and_then(|t| {
        let options = types.get("ObjectOptions")?;
        let variant = options["variants"]
            .as_array()?
            .iter()
            .find(|v| v["case"] == t)?;
        types.get(variant["type"].as_str()?)
    });
    let text = match (wanted, branch) {
        (Some(t), Some(props)) => {
            let mut lines: Vec<String> = props["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    let ty = match m["type"].as_str().unwrap_or_default() {
                        "str" => "string",
                        "int" | "int64" => "int",
                        other => other,
                    };
                    format!("  {}=<{ty}>\n", m["name"].as_str().unwrap_or_default())
                })
                .collect();
            lines.sort();
            format!("{t} options:\n{}", lines.concat())
        }
        _ => {
            let mut names = object_types.clone();
            names.sort_unstable();
            let list: String = names.iter().map(|n| format!("  {n}\n")).collect();
            format!("List of user creatable objects:\n{list}")
        }
    };
    CliOption::PrintHelp { text, status: 0 }
}

/// The text of `--help`, for program name `prog`.
pub fn help_text(prog: &str) -> String {
    let mut s = format!(
        "Usage: {prog} [options]\n\
         Storage daemon with the command line and QMP interface of qemu-storage-daemon {}\n\
         \n\
         \x20 -h, --help             display this help and exit\n\
         \x20 -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n\
         \x20                        specify tracing options (accepted; there are no\n\
         \x20                        trace events)\n\
         \x20 -V, --version          output version information and exit\n\
         \n\
         \x20 --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]\n\
         \x20            [,cache.direct=on|off][,cache.no-flush=on|off]\n\
         \x20            [,read-only=on|off][,auto-read-only=on|off]\n\
         \x20            [,force-share=on|off][,detect-zeroes=on|off|unmap]\n\
         \x20            [,driver specific parameters...]\n\
         \x20                        configure a block backend\n\
         \n\
         \x20 --chardev <options>    configure a character device backend\n\
         \x20                        (see the qemu(1) man page for possible options)\n\
         \n\
         \x20 --daemonize            daemonize the process, and have the parent exit\n\
         \x20                        once startup is complete\n\
         \n",
        qemu_version()
    );
    if cfg!(feature = "nbd") {
        s.push_str(
            "  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]\n\
             \x20          [,writable=on|off][,bitmap=<name>]\n\
             \x20                        export the specified block node over NBD\n\
             \x20                        (requires --nbd-server)\n\
             \n",
        );
    }
    if cfg!(feature = "fuse") {
        s.push_str(
            "  --export [type=]fuse,id=<id>,node-name=<node-name>,mountpoint=<file>\n\
             \x20          [,growable=on|off][,writable=on|off][,allow-other=on|off|auto]\n\
             \x20                        export the specified block node over FUSE\n\
             \n",
        );
    }
    if cfg!(feature = "vhost-user-blk") {
        s.push_str(
            "  --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,\n\
             \x20          addr.type=unix,addr.path=<socket-path>[,writable=on|off]\n\
             \x20          [,logical-block-size=<block-size>][,num-queues=<num-queues>]\n\
             \x20                        export the specified block node as a\n\
             \x20                        vhost-user-blk device over UNIX domain socket\n\
             \x20 --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,\n\
             \x20          addr.type=fd,addr.str=<fd>[,writable=on|off]\n\
             \x20          [,logical-block-size=<block-size>][,num-queues=<num-queues>]\n\
             \x20                        export the specified block node as a\n\
             \x20                        vhost-user-blk device over file descriptor\n\
             \n",
        );
    }
    if cfg!(feature = "vduse") {
        s.push_str(
            "  --export [type=]vduse-blk,id=<id>,node-name=<node-name>\n\
             \x20          ,name=<vduse-name>[,writable=on|off]\n\
             \x20          [,num-queues=<num-queues>][,queue-size=<queue-size>]\n\
             \x20          [,logical-block-size=<logical-block-size>]\n\
             \x20          [,serial=<serial-number>]\n\
             \x20                        export the specified block node as a\n\
             \x20                        vduse-blk device\n\
             \n",
        );
    }
    s.push_str(
        "  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]\n\
         \x20                        configure a QMP monitor\n\
         \n",
    );
    if cfg!(feature = "nbd") {
        s.push_str(
            "  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n\
             \x20              [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]\n\
             \x20 --nbd-server addr.type=unix,addr.path=<path>\n\
             \x20              [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]\n\
             \x20                        start an NBD server for exporting block nodes\n\
             \n",
        );
    }
    s.push_str(
        "  --object help          list object types that can be added\n\
         \x20 --object <type>,help   list properties for the given object type\n\
         \x20 --object <type>[,<property>=<value>...]\n\
         \x20                        create a new object of type <type>, setting\n\
         \x20                        properties in the order they are specified. Note\n\
         \x20                        that the 'id' property must be set.\n\
         \x20                        See the qemu(1) man page for documentation of the\n\
         \x20                        objects that can be added.\n\
         \n\
         \x20 --pidfile <path>       write process ID to a file after startup\n\
         \n\
         More information on QEMU, whose interface this is, at <https://qemu.org>.\n",
    );
    s
}

/// The QEMU release whose interface this daemon implements, `10.0.2`.
fn qemu_version() -> String {
    let (major, minor, micro) = crate::daemon::QEMU_VERSION;
    format!("{major}.{minor}.{micro}")
}

/// The text of `--version`: the QEMU version first, as tools parse it
/// (`qemu-storage-daemon version 10.0.2 (...)`), then this package.
pub fn version_text() -> String {
    let v = qemu_version();
    format!(
        "storage-daemon version {v} ({})\n\
         Implements the interface of qemu-storage-daemon {v}; QEMU is\n\
         Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n",
        crate::daemon::package()
    )
}

// The table is checked against qsd, which always has NBD.
#[cfg(all(test, feature = "nbd"))]
mod tests;
