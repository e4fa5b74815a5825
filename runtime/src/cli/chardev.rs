//! `--chardev`: QEMU's QemuOpts syntax (`util/qemu-option.c`) with the
//! chardev option list, and the backend parsing of `chardev/char*.c`, into a
//! plain [`ChardevSpec`].
//!
//! QemuOpts differs from keyval: the first parameter may be a bare backend
//! name (`socket,...`), a bare word elsewhere is a boolean flag (`server`
//! means `server=on`, `nowait` means `wait=off`; QEMU warns that this form
//! is deprecated), every option name must be one the chardev list knows,
//! `,,` escapes a comma in any value, a later value wins, and the first
//! `id=` gives the id.

use super::numbers::{self, NumError};

/// A character device to create, as `--chardev` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChardevSpec {
    /// The option as given (`--chardev socket,...`): the prefix of QEMU's
    /// messages about it.
    pub location: String,
    pub id: String,
    pub backend: ChardevBackend,
    /// `mux=on`: a multiplexer named `id` over the backend named
    /// `id-base`.
    pub mux: bool,
    pub logfile: Option<String>,
    pub logappend: bool,
    /// Deprecation warnings QEMU prints while parsing, without the
    /// `PROG: LOCATION: warning: ` prefix (a second line may follow).
    pub warnings: Vec<String>,
}

/// The backend part of a [`ChardevSpec`].
#[derive(Debug, Clone, PartialEq)]
pub enum ChardevBackend {
    Socket(SocketChardev),
    Null,
    Stdio {
        signal: bool,
    },
    File {
        path: String,
        input_path: Option<String>,
        append: bool,
    },
    /// A backend QEMU knows whose options are not parsed here: its name and
    /// its options as given (converted: `on`/`off` for flags), `id` and
    /// `backend` excluded.
    Other {
        backend: String,
        options: Vec<(String, String)>,
    },
}

/// The `socket` backend, as QEMU's `ChardevSocket` (optional members are
/// `None` where QEMU leaves `has_...` false).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketChardev {
    pub addr: ChardevAddr,
    /// Listen rather than connect (default off).
    pub server: bool,
    /// Present when given or when `server` is on; defaults to on.
    pub wait: Option<bool>,
    pub telnet: Option<bool>,
    pub tn3270: Option<bool>,
    pub websocket: Option<bool>,
    pub nodelay: Option<bool>,
    pub reconnect: Option<u64>,
    pub reconnect_ms: Option<u64>,
    pub tls_creds: Option<String>,
    pub tls_authz: Option<String>,
}

/// Where a socket chardev listens or connects.
#[derive(Debug, Clone, PartialEq)]
pub enum ChardevAddr {
    Unix {
        path: String,
        /// Linux abstract namespace options (defaults: tight on,
        /// abstract off).
        tight: bool,
        is_abstract: bool,
    },
    Inet {
        host: String,
        port: String,
        to: Option<u64>,
        ipv4: Option<bool>,
        ipv6: Option<bool>,
    },
    /// `fd=N`, or no address at all (an empty string, which QEMU fails
    /// to open: see [`parse_fd`]).
    Fd(String),
}

/// `socket_get_fd()` without a monitor: the descriptor number of `fd=...`,
/// or QEMU's message ("Unable to parse FD number x").
pub fn parse_fd(fd: &str) -> Result<i32, String> {
    numbers::strtoi32_decimal(fd).ok_or_else(|| format!("Unable to parse FD number {fd}"))
}

/// What `--chardev` produced: a device, or help to print.
#[derive(Debug, Clone, PartialEq)]
pub enum Chardev {
    Spec(Box<ChardevSpec>),
    /// Text for standard output, then exit with `status` (QEMU exits 0
    /// after listing the backends but 1 after listing the options).
    Help {
        text: String,
        status: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptType {
    Str,
    Bool,
    Num,
    Size,
}

/// `qemu_chardev_opts`: every option `--chardev` accepts besides `id`.
const OPTIONS: &[(&str, OptType)] = &[
    ("backend", OptType::Str),
    ("path", OptType::Str),
    ("input-path", OptType::Str),
    ("host", OptType::Str),
    ("port", OptType::Str),
    ("fd", OptType::Str),
    ("localaddr", OptType::Str),
    ("localport", OptType::Str),
    ("to", OptType::Num),
    ("ipv4", OptType::Bool),
    ("ipv6", OptType::Bool),
    ("wait", OptType::Bool),
    ("server", OptType::Bool),
    ("delay", OptType::Bool),
    ("nodelay", OptType::Bool),
    ("reconnect", OptType::Num),
    ("reconnect-ms", OptType::Num),
    ("telnet", OptType::Bool),
    ("tn3270", OptType::Bool),
    ("tls-creds", OptType::Str),
    ("tls-authz", OptType::Str),
    ("websocket", OptType::Bool),
    ("width", OptType::Num),
    ("height", OptType::Num),
    ("cols", OptType::Num),
    ("rows", OptType::Num),
    ("mux", OptType::Bool),
    ("signal", OptType::Bool),
    ("name", OptType::Str),
    ("debug", OptType::Num),
    ("size", OptType::Size),
    ("chardev", OptType::Str),
    ("chardevs.0", OptType::Str),
    ("chardevs.1", OptType::Str),
    ("chardevs.2", OptType::Str),
    ("chardevs.3", OptType::Str),
    ("append", OptType::Bool),
    ("logfile", OptType::Str),
    ("logappend", OptType::Bool),
    ("mouse", OptType::Bool),
    ("clipboard", OptType::Bool),
    ("tight", OptType::Bool),
    ("abstract", OptType::Bool),
];

/// The backends qemu-storage-daemon 10.0 offers, in the order it lists
/// them.
const BACKENDS: &[&str] = &[
    "pty", "file", "udp", "memory", "stdio", "socket", "ringbuf", "null", "parallel", "pipe",
    "mux", "serial", "hub",
];

fn is_help(s: &str) -> bool {
    s == "help" || s == "?"
}

pub use storage_block::id_wellformed;

/// QEMU's message for a malformed id, with its hint line.
pub fn bad_id() -> String {
    "Parameter 'id' expects an identifier\n\
     Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."
        .into()
}

/// `get_opt_value()`: a value up to a single comma, `,,` meaning `,`.
/// Returns the value and where the next parameter starts.
fn opt_value(p: &str, mut i: usize) -> (String, usize) {
    let b = p.as_bytes();
    let mut out = Vec::new();
    while i < b.len() {
        if b[i] == b',' {
            if b.get(i + 1) == Some(&b',') {
                out.push(b',');
                i += 2;
                continue;
            }
            return (String::from_utf8_lossy(&out).into_owned(), i + 1);
        }
        out.push(b[i]);
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), i)
}

/// One parameter as `get_opt_name_value()` splits it.
struct Param {
    name: String,
    value: String,
    help: bool,
    /// The deprecation warning for a bare flag.
    warning: Option<String>,
}

fn next_param(p: &str, i: usize, firstname: Option<&str>) -> (Param, usize) {
    let b = p.as_bytes();
    let rest = &p[i..];
    let len = rest.find(['=', ',']).unwrap_or(rest.len());
    if rest.as_bytes().get(len) == Some(&b'=') {
        let (value, next) = opt_value(p, i + len + 1);
        let param = Param {
            name: rest[..len].to_string(),
            value,
            help: false,
            warning: None,
        };
        return (param, next);
    }
    if let Some(first) = firstname {
        let (value, next) = opt_value(p, i);
        let param = Param {
            name: first.to_string(),
            value,
            help: false,
            warning: None,
        };
        return (param, next);
    }
    // A flag.
    let word = &rest[..len];
    let next = if b.get(i + len) == Some(&b',') {
        i + len + 1
    } else {
        i + len
    };
    let (name, value, prefix) = match word.strip_prefix("no") {
        Some(n) => (n.to_string(), "off", "no"),
        None => (word.to_string(), "on", ""),
    };
    let help = prefix.is_empty() && is_help(&name);
    let warning = (!help).then(|| {
        let advice = if name == "delay" {
            format!("nodelay={}", if prefix.is_empty() { "off" } else { "on" })
        } else {
            format!("{name}={value}")
        };
        format!(
            "short-form boolean option '{prefix}{name}' deprecated\nPlease use {advice} instead"
        )
    });
    let param = Param {
        name,
        value: value.into(),
        help,
        warning,
    };
    (param, next)
}

/// A validated option value.
#[derive(Debug, Clone)]
enum OptValue {
    Str(String),
    Bool(bool),
    Num(u64),
}

struct Opts {
    /// In the order given; lookups take the last.
    list: Vec<(String, String, OptValue)>,
}

impl Opts {
    fn get(&self, name: &str) -> Option<&OptValue> {
        self.list
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
    }

    fn str(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            OptValue::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            OptValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn num(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            OptValue::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// `qemu_opt_parse()` for one option.
fn validate(name: &str, value: &str) -> Result<OptValue, String> {
    let Some(&(_, ty)) = OPTIONS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("Invalid parameter '{name}'"));
    };
    match ty {
        OptType::Str => Ok(OptValue::Str(value.to_string())),
        OptType::Bool => numbers::parse_bool(value)
            .map(OptValue::Bool)
            .ok_or_else(|| format!("Parameter '{name}' expects 'on' or 'off'")),
        OptType::Num => match numbers::strtou64_checked(value) {
            Ok(n) => Ok(OptValue::Num(n)),
            Err(NumError::Range) => Err(format!(
                "Value '{value}' is too large for parameter '{name}'"
            )),
            Err(NumError::Invalid) => Err(format!("Parameter '{name}' expects a number")),
        },
        OptType::Size => match numbers::strtosz(value) {
            Ok(n) => Ok(OptValue::Num(n)),
            Err(NumError::Range) => Err(format!(
                "Value '{value}' is out of range for parameter '{name}'"
            )),
            Err(NumError::Invalid) => Err(format!(
                "Parameter '{name}' expects a non-negative number below 2^64\n\
                 Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively."
            )),
        },
    }
}

/// The text `--chardev help` prints.
fn backend_help() -> String {
    let mut s = String::from("Available chardev backend types: \n");
    for b in BACKENDS {
        s.push_str(&format!("  {b}\n"));
    }
    s
}

/// The text `--chardev BACKEND,help` prints (`qemu_opts_print_help()`).
fn options_help() -> String {
    let mut lines: Vec<String> = OPTIONS
        .iter()
        .map(|(n, t)| {
            let t = match t {
                OptType::Str => "str",
                OptType::Bool => "bool (on/off)",
                OptType::Num => "num",
                OptType::Size => "size",
            };
            format!("  {n}=<{t}>\n")
        })
        .collect();
    lines.sort();
    format!("chardev options:\n{}", lines.concat())
}

/// Parses a `--chardev` argument.
pub fn parse(location: &str, params: &str) -> Result<Chardev, String> {
    // opts_parse_id(): the first `id=`, reading every parameter as
    // `name=value` or a flag.
    let mut id = None;
    let mut i = 0;
    while i < params.len() {
        let (param, next) = next_param(params, i, None);
        if param.name == "id" {
            id = Some(param.value);
            break;
        }
        i = next;
    }
    if let Some(id) = &id
        && !id_wellformed(id)
    {
        return Err(bad_id());
    }

    // opts_do_parse(): the first parameter may be the backend's name.
    let mut opts = Opts { list: Vec::new() };
    let mut warnings = Vec::new();
    let mut i = 0;
    let mut first = Some("backend");
    while i < params.len() {
        let (param, next) = next_param(params, i, first);
        first = None;
        i = next;
        if param.help {
            return Ok(Chardev::Help {
                text: options_help(),
                status: 1,
            });
        }
        warnings.extend(param.warning);
        if param.name == "id" {
            continue;
        }
        let value = validate(&param.name, &param.value)?;
        opts.list.push((param.name, param.value, value));
    }

    // qemu_chr_new_from_opts()
    let backend = opts.str("backend");
    if let Some(b) = &backend
        && is_help(b)
    {
        return Ok(Chardev::Help {
            text: backend_help(),
            status: 0,
        });
    }
    let Some(id) = id else {
        return Err("chardev: no id specified".into());
    };
    let Some(backend) = backend else {
        return Err(format!("chardev: \"{id}\" missing backend"));
    };
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(format!("'{backend}' is not a valid char driver name"));
    }
    let parsed = match backend.as_str() {
        "socket" => ChardevBackend::Socket(socket(&opts)?),
        "null" => ChardevBackend::Null,
        "stdio" => ChardevBackend::Stdio {
            signal: opts.bool("signal").unwrap_or(true),
        },
        "file" => {
            let Some(path) = opts.str("path") else {
                return Err("chardev: file: no filename given".into());
            };
            ChardevBackend::File {
                path,
                input_path: opts.str("input-path"),
                append: opts.bool("append").unwrap_or(false),
            }
        }
        _ => ChardevBackend::Other {
            backend: backend.clone(),
            options: opts
                .list
                .iter()
                .filter(|(n, _, _)| n != "backend")
                .map(|(n, raw, _)| (n.clone(), raw.clone()))
                .collect(),
        },
    };
    Ok(Chardev::Spec(Box::new(ChardevSpec {
        location: location.to_string(),
        id,
        backend: parsed,
        mux: opts.bool("mux").unwrap_or(false),
        logfile: opts.str("logfile"),
        logappend: opts.bool("logappend").unwrap_or(false),
        warnings,
    })))
}

/// `qemu_chr_parse_socket()`
fn socket(opts: &Opts) -> Result<SocketChardev, String> {
    let path = opts.str("path");
    let host = opts.str("host");
    let port = opts.str("port");
    let fd = opts.str("fd");
    let given = [path.is_some(), fd.is_some(), host.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err("None or one of 'path', 'fd' or 'host' option required.".into());
    }
    if host.is_some() && port.is_none() {
        return Err("chardev: socket: no port given".into());
    }
    let (delay, nodelay) = (opts.bool("delay"), opts.bool("nodelay"));
    if delay.is_some() && nodelay.is_some() {
        return Err("'delay' and 'nodelay' are mutually exclusive".into());
    }
    let server = opts.bool("server").unwrap_or(false);
    let addr = match (path, host) {
        (Some(path), _) => ChardevAddr::Unix {
            path,
            tight: opts.bool("tight").unwrap_or(true),
            is_abstract: opts.bool("abstract").unwrap_or(false),
        },
        (None, Some(host)) => ChardevAddr::Inet {
            host,
            port: port.unwrap_or_default(),
            to: opts.num("to"),
            ipv4: opts.bool("ipv4"),
            ipv6: opts.bool("ipv6"),
        },
        (None, None) => ChardevAddr::Fd(fd.unwrap_or_default()),
    };
    Ok(SocketChardev {
        addr,
        server,
        wait: (opts.get("wait").is_some() || server).then(|| opts.bool("wait").unwrap_or(true)),
        telnet: opts.bool("telnet"),
        tn3270: opts.bool("tn3270"),
        websocket: opts.bool("websocket"),
        nodelay: (delay.is_some() || nodelay.is_some())
            .then(|| delay == Some(false) || nodelay == Some(true)),
        reconnect: opts.num("reconnect"),
        reconnect_ms: opts.num("reconnect-ms"),
        tls_creds: opts.str("tls-creds"),
        tls_authz: opts.str("tls-authz"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(params: &str) -> ChardevSpec {
        match parse("--chardev x", params) {
            Ok(Chardev::Spec(s)) => *s,
            other => panic!("{params}: {other:?}"),
        }
    }

    fn socket(params: &str) -> SocketChardev {
        match spec(params).backend {
            ChardevBackend::Socket(s) => s,
            other => panic!("{params}: {other:?}"),
        }
    }

    #[test]
    fn unix_socket_server() {
        let s = spec("socket,id=m,path=/tmp/q,,x.sock,server=on,wait=off");
        assert_eq!(s.id, "m");
        assert!(s.warnings.is_empty());
        assert_eq!(
            s.backend,
            ChardevBackend::Socket(SocketChardev {
                addr: ChardevAddr::Unix {
                    path: "/tmp/q,x.sock".into(),
                    tight: true,
                    is_abstract: false
                },
                server: true,
                wait: Some(false),
                telnet: None,
                tn3270: None,
                websocket: None,
                nodelay: None,
                reconnect: None,
                reconnect_ms: None,
                tls_creds: None,
                tls_authz: None,
            })
        );
    }

    #[test]
    fn inet_fd_and_flags() {
        let s = socket("socket,id=m,host=localhost,port=4444,server=on,ipv4=on,to=4450");
        assert_eq!(
            s.addr,
            ChardevAddr::Inet {
                host: "localhost".into(),
                port: "4444".into(),
                to: Some(4450),
                ipv4: Some(true),
                ipv6: None
            }
        );
        assert_eq!(s.wait, Some(true));
        assert_eq!(socket("socket,id=m,fd=3").addr, ChardevAddr::Fd("3".into()));
        // No address: QEMU goes on with an empty fd and fails to open it.
        assert_eq!(socket("socket,id=m").addr, ChardevAddr::Fd(String::new()));
        assert_eq!(parse_fd(""), Err("Unable to parse FD number ".into()));
        assert_eq!(parse_fd("x"), Err("Unable to parse FD number x".into()));
        assert_eq!(parse_fd("3"), Ok(3));
        // Client sockets have no wait unless given.
        assert_eq!(socket("socket,id=m,path=p").wait, None);

        // Deprecated flags, with QEMU's warnings.
        let s = spec("socket,id=m,path=p,server,nowait");
        let ChardevBackend::Socket(sock) = &s.backend else {
            panic!("not a socket")
        };
        assert!(sock.server);
        assert_eq!(sock.wait, Some(false));
        assert_eq!(
            s.warnings,
            [
                "short-form boolean option 'server' deprecated\nPlease use server=on instead",
                "short-form boolean option 'nowait' deprecated\nPlease use wait=off instead"
            ]
        );
        assert_eq!(socket("socket,id=m,path=p,nodelay=on").nodelay, Some(true));
        assert_eq!(socket("socket,id=m,path=p,delay=off").nodelay, Some(true));
    }

    #[test]
    fn other_backends_and_common_options() {
        let s = spec("null,id=n,logfile=/tmp/log,logappend=on,mux=on");
        assert_eq!(s.backend, ChardevBackend::Null);
        assert!(s.mux && s.logappend);
        assert_eq!(s.logfile.as_deref(), Some("/tmp/log"));
        assert_eq!(
            spec("stdio,id=s").backend,
            ChardevBackend::Stdio { signal: true }
        );
        assert_eq!(
            spec("file,id=f,path=/x,append=on").backend,
            ChardevBackend::File {
                path: "/x".into(),
                input_path: None,
                append: true
            }
        );
        assert_eq!(
            spec("ringbuf,id=r,size=64k").backend,
            ChardevBackend::Other {
                backend: "ringbuf".into(),
                options: vec![("size".into(), "64k".into())]
            }
        );
        // The first id counts; the backend may also be named.
        assert_eq!(spec("id=a,backend=null,id=b").id, "a");
        // A later value wins.
        let s = socket("socket,id=m,path=a,path=b");
        assert!(matches!(s.addr, ChardevAddr::Unix { ref path, .. } if path == "b"));
    }

    #[test]
    fn errors_as_qsd_prints_them() {
        // Texts qemu-storage-daemon 10.0.2 printed for --chardev PARAMS.
        for (params, msg) in [
            ("foo,id=x", "'foo' is not a valid char driver name"),
            ("socket", "chardev: no id specified"),
            ("", "chardev: no id specified"),
            ("id=m,path=/tmp/m.sock", "chardev: \"m\" missing backend"),
            (
                "socket,id=m,path=/p,server=x",
                "Parameter 'server' expects 'on' or 'off'",
            ),
            (
                "socket,id=m,path=/p,server=on,wait=off,foo=1",
                "Invalid parameter 'foo'",
            ),
            ("socket,id=m,path=/p,serv=on", "Invalid parameter 'serv'"),
            ("null,id=m,x=1", "Invalid parameter 'x'"),
            (
                "socket,id=m,host=localhost",
                "chardev: socket: no port given",
            ),
            (
                "socket,id=m,path=/p,host=h",
                "None or one of 'path', 'fd' or 'host' option required.",
            ),
            (
                "socket,id=m,path=/p,reconnect=x",
                "Parameter 'reconnect' expects a number",
            ),
            ("file,id=m", "chardev: file: no filename given"),
            ("socket,id=a,help=x", "Invalid parameter 'help'"),
            (
                "socket,id=1m,path=/p",
                "Parameter 'id' expects an identifier\n\
                 Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
            ),
        ] {
            assert_eq!(
                parse("--chardev x", params),
                Err(msg.to_string()),
                "{params}"
            );
        }
        assert_eq!(
            parse("l", "socket,id=m,path=p,delay=on,nodelay=on"),
            Err("'delay' and 'nodelay' are mutually exclusive".into())
        );
        assert_eq!(
            parse("l", "socket,id=m,to=99999999999999999999"),
            Err("Value '99999999999999999999' is too large for parameter 'to'".into())
        );
    }

    #[test]
    fn help() {
        let Ok(Chardev::Help { text, status: 0 }) = parse("l", "help") else {
            panic!("no backend list");
        };
        assert!(text.starts_with("Available chardev backend types: \n  pty\n  file\n"));
        assert!(matches!(
            parse("l", "?"),
            Ok(Chardev::Help { status: 0, .. })
        ));
        assert!(matches!(
            parse("l", "backend=help"),
            Ok(Chardev::Help { status: 0, .. })
        ));
        let Ok(Chardev::Help { text, status: 1 }) = parse("l", "socket,help") else {
            panic!("no option list");
        };
        // Byte for byte what qemu-storage-daemon 10.0.2 printed.
        let qsd = "chardev options:\n  abstract=<bool (on/off)>\n  append=<bool (on/off)>\n  \
            backend=<str>\n  chardev=<str>\n  chardevs.0=<str>\n  chardevs.1=<str>\n  \
            chardevs.2=<str>\n  chardevs.3=<str>\n  clipboard=<bool (on/off)>\n  cols=<num>\n  \
            debug=<num>\n  delay=<bool (on/off)>\n  fd=<str>\n  height=<num>\n  host=<str>\n  \
            input-path=<str>\n  ipv4=<bool (on/off)>\n  ipv6=<bool (on/off)>\n  \
            localaddr=<str>\n  localport=<str>\n  logappend=<bool (on/off)>\n  \
            logfile=<str>\n  mouse=<bool (on/off)>\n  mux=<bool (on/off)>\n  name=<str>\n  \
            nodelay=<bool (on/off)>\n  path=<str>\n  port=<str>\n  reconnect-ms=<num>\n  \
            reconnect=<num>\n  rows=<num>\n  server=<bool (on/off)>\n  \
            signal=<bool (on/off)>\n  size=<size>\n  telnet=<bool (on/off)>\n  \
            tight=<bool (on/off)>\n  tls-authz=<str>\n  tls-creds=<str>\n  \
            tn3270=<bool (on/off)>\n  to=<num>\n  wait=<bool (on/off)>\n  \
            websocket=<bool (on/off)>\n  width=<num>\n";
        assert_eq!(text, qsd);
        assert!(matches!(
            parse("l", "socket,?"),
            Ok(Chardev::Help { status: 1, .. })
        ));
    }
}
