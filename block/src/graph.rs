//! The node graph: nodes by name, their children, their users and the
//! permissions those users claim (which become image locks on `file`
//! nodes). Only the control path (QMP, command line, export setup) takes
//! the graph's lock; requests go straight to a node's `Arc<dyn BlockDevice>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::{self, FileInner};
use super::node::{Common, Node};
use super::null::NullDriver;
use super::perm::Perms;
use super::raw::RawDriver;
use super::{
    BlockDevice, BlockDeviceInfo, BlockdevOptions, BlockdevRef, DetectZeroes, Discard,
    DriverOptions, MAX_LENGTH, strerror,
};

/// A graph operation's error: QEMU's message, and the hint QEMU prints
/// after it on the command line (QMP sends only the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    desc: String,
    hint: Option<String>,
}

impl Error {
    pub fn new(desc: impl Into<String>) -> Self {
        Error {
            desc: desc.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message (QMP's `desc`).
    pub fn desc(&self) -> &str {
        &self.desc
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    fn io(e: &io::Error) -> Self {
        Error::new(strerror(e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for Error {}

/// Who holds a claim on a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Claimant {
    Parent(String),
    User(u64),
}

struct Entry {
    dev: Arc<dyn BlockDevice>,
    /// `file` nodes: where the locks live.
    file: Option<Arc<FileInner>>,
    children: Vec<String>,
    /// Created inline by a parent: not owned by the monitor.
    implicit: bool,
    /// A raw window (offset or size): the child must not be resized.
    windowed: bool,
    read_only: bool,
    force_share: bool,
    claims: BTreeMap<Claimant, Perms>,
    /// Creation order; query-named-block-nodes lists newest first.
    seq: u64,
}

/// Options a child inherits from its parent (QEMU's
/// `bdrv_inherited_options`).
#[derive(Debug, Clone, Copy)]
struct Inherited {
    read_only: bool,
    auto_read_only: bool,
    force_share: bool,
    direct: bool,
    no_flush: bool,
}

struct Inner {
    nodes: HashMap<String, Entry>,
    seq: u64,
    /// QEMU's `id_generate(ID_BLOCK)` counter.
    auto_ids: u64,
    rng: u64,
    next_user: u64,
}

/// The block node graph.
pub struct BlockGraph {
    inner: Mutex<Inner>,
}

/// A user of a node (an export): holds its permissions until dropped, and
/// keeps `blockdev-del` from removing the node.
pub struct NodeUser {
    graph: Arc<BlockGraph>,
    node: String,
    id: u64,
    dev: Arc<dyn BlockDevice>,
}

impl NodeUser {
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    pub fn node_name(&self) -> &str {
        &self.node
    }
}

impl Drop for NodeUser {
    fn drop(&mut self) {
        let mut g = self.graph.lock();
        let _ = g.set_claim(&self.node, Claimant::User(self.id), None);
    }
}

impl fmt::Debug for NodeUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeUser")
            .field("node", &self.node)
            .field("id", &self.id)
            .finish()
    }
}

fn not_found(name: &str) -> Error {
    Error::new(format!("Cannot find device='' nor node-name='{name}'"))
}

/// QEMU's `id_wellformed()`: a letter, then letters, digits, `-`, `.`,
/// `_`. Node names, export ids, chardev and object ids all follow it.
pub fn id_wellformed(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

impl Default for BlockGraph {
    fn default() -> Self {
        BlockGraph::new()
    }
}

impl BlockGraph {
    pub fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        BlockGraph {
            inner: Mutex::new(Inner {
                nodes: HashMap::new(),
                seq: 0,
                auto_ids: 0,
                rng: t ^ (u64::from(std::process::id()) << 32) | 1,
                next_user: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `blockdev-add`: opens a node (and its inline children); returns its
    /// name.
    pub fn add(&self, opts: &BlockdevOptions) -> Result<String, Error> {
        if opts.node_name.is_none() {
            return Err(Error::new(
                "'node-name' must be specified for the root node",
            ));
        }
        self.lock().open(opts, None)
    }

    /// `blockdev-del`.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut g = self.lock();
        let Some(e) = g.nodes.get(name) else {
            return Err(Error::new(format!(
                "Failed to find node with node-name='{name}'"
            )));
        };
        if e.claims.keys().any(|c| matches!(c, Claimant::User(_))) {
            return Err(Error::new(format!("Node {name} is in use")));
        }
        if e.implicit {
            return Err(Error::new(format!(
                "Node {name} is not owned by the monitor"
            )));
        }
        if !e.claims.is_empty() {
            return Err(Error::new(format!("Block device {name} is in use")));
        }
        g.delete(name);
        Ok(())
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn BlockDevice>, Error> {
        self.lock()
            .nodes
            .get(name)
            .map(|e| e.dev.clone())
            .ok_or_else(|| not_found(name))
    }

    /// Node names, newest first.
    pub fn names(&self) -> Vec<String> {
        let g = self.lock();
        let mut v: Vec<_> = g.nodes.iter().map(|(n, e)| (e.seq, n.clone())).collect();
        v.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// How many users (exports, resizes in progress) hold the node.
    pub fn users(&self, name: &str) -> usize {
        let g = self.lock();
        g.nodes.get(name).map_or(0, |e| {
            e.claims
                .keys()
                .filter(|c| matches!(c, Claimant::User(_)))
                .count()
        })
    }

    /// Becomes a user of `name` with permissions `perms` (an export's are
    /// [`Perms::export`]): fails when the node is read-only and `perms`
    /// write, or when another process's image locks conflict.
    pub fn attach(self: &Arc<Self>, name: &str, perms: Perms) -> Result<NodeUser, Error> {
        let mut g = self.lock();
        let dev = g
            .nodes
            .get(name)
            .map(|e| e.dev.clone())
            .ok_or_else(|| not_found(name))?;
        let id = g.next_user;
        g.next_user += 1;
        g.set_claim(name, Claimant::User(id), Some(perms))?;
        Ok(NodeUser {
            graph: self.clone(),
            node: name.to_owned(),
            id,
            dev,
        })
    }

    /// `block_resize` on a node.
    pub async fn resize(self: &Arc<Self>, name: &str, size: i64) -> Result<(), Error> {
        if !self.lock().nodes.contains_key(name) {
            return Err(not_found(name));
        }
        let Ok(size) = u64::try_from(size) else {
            return Err(Error::new("Parameter 'size' expects a >0 size"));
        };
        if size > MAX_LENGTH {
            return Err(Error::new(format!(
                "offset({size}) exceeds maximum({MAX_LENGTH})"
            )));
        }
        let user = self.attach(name, Perms::resize())?;
        let r = user.device().resize(size).await;
        drop(user);
        r.map_err(|e| match e.raw_os_error() {
            Some(_) => Error::io(&e),
            None => Error::new(e.to_string()),
        })
    }

    /// `query-named-block-nodes`, newest node first like QEMU.
    pub fn query(&self) -> Vec<BlockDeviceInfo> {
        let g = self.lock();
        let mut v: Vec<_> = g.nodes.iter().collect();
        v.sort_unstable_by_key(|a| std::cmp::Reverse(a.1.seq));
        v.into_iter()
            .map(|(n, e)| BlockDeviceInfo::new(n, e.dev.info()))
            .collect()
    }

    /// Flushes every node (shutdown); returns the first error.
    pub async fn flush_all(&self) -> io::Result<()> {
        let devs: Vec<_> = self.lock().nodes.values().map(|e| e.dev.clone()).collect();
        let mut first = Ok(());
        for d in devs {
            if let Err(e) = d.flush().await {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl Inner {
    fn auto_name(&mut self) -> String {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let name = format!("#block{}{:02}", self.auto_ids, self.rng % 100);
        self.auto_ids += 1;
        name
    }

    /// QEMU's `bdrv_assign_node_name` checks.
    fn check_name(&self, name: &str) -> Result<(), Error> {
        if !id_wellformed(name) {
            return Err(Error::new(format!("Invalid node-name: '{name}'")));
        }
        if self.nodes.contains_key(name) {
            return Err(Error::new(format!(
                "Duplicate nodes with node-name='{name}'"
            )));
        }
        if name.len() >= 32 {
            return Err(Error::new("Node name too long"));
        }
        Ok(())
    }

    fn open(&mut self, opts: &BlockdevOptions, parent: Option<Inherited>) -> Result<String, Error> {
        let inh = |own: Option<bool>, from: fn(&Inherited) -> bool| {
            own.or(parent.as_ref().map(from)).unwrap_or(false)
        };
        let mut read_only = inh(opts.read_only, |p| p.read_only);
        let auto_read_only = inh(opts.auto_read_only, |p| p.auto_read_only);
        let force_share = inh(opts.force_share, |p| p.force_share);
        let direct = inh(opts.cache.direct, |p| p.direct);
        let no_flush = inh(opts.cache.no_flush, |p| p.no_flush);
        // Children default to unmap: their parents decide what to discard.
        let discard = opts.discard.unwrap_or(if parent.is_some() {
            Discard::Unmap
        } else {
            Discard::Ignore
        });
        let detect_zeroes = opts.detect_zeroes.unwrap_or_default();
        if detect_zeroes == DetectZeroes::Unmap && discard != Discard::Unmap {
            return Err(Error::new(
                "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap",
            ));
        }
        if force_share && !read_only {
            return Err(Error::new(
                "force-share=on can only be used with read-only images",
            ));
        }
        let mut common = Common {
            read_only,
            discard,
            detect_zeroes,
            cache_direct: direct,
            cache_no_flush: no_flush,
        };
        let mut children = Vec::new();
        let mut windowed = false;
        let mut file = None;
        let dev: Arc<dyn BlockDevice> = match &opts.driver {
            DriverOptions::File(f) | DriverOptions::HostDevice(f) => {
                let host = matches!(opts.driver, DriverOptions::HostDevice(_));
                let o = file::open(f, host, read_only, auto_read_only, direct, no_flush)?;
                read_only = o.read_only;
                common.read_only = read_only;
                file = Some(o.driver.control());
                Arc::new(Node {
                    common,
                    drv: o.driver,
                })
            }
            DriverOptions::NullCo(n) | DriverOptions::NullAio(n) => {
                let aio = matches!(opts.driver, DriverOptions::NullAio(_));
                Arc::new(Node {
                    common,
                    drv: NullDriver::new(aio, *n)?,
                })
            }
            DriverOptions::Raw(r) => {
                let (child, inline) = match &r.file {
                    BlockdevRef::Reference(c) => {
                        if !self.nodes.contains_key(c) {
                            return Err(Error::new(format!(
                                "Cannot find device='{c}' nor node-name='{c}'"
                            )));
                        }
                        (c.clone(), false)
                    }
                    BlockdevRef::Definition(copts) => {
                        let inherited = Inherited {
                            read_only,
                            auto_read_only,
                            force_share,
                            direct,
                            no_flush,
                        };
                        (self.open(copts, Some(inherited))?, true)
                    }
                };
                let child_dev = self.nodes[&child].dev.clone();
                match RawDriver::new(child_dev, r.offset, r.size) {
                    Ok(drv) => {
                        windowed = drv.windowed();
                        children.push(child);
                        Arc::new(Node { common, drv })
                    }
                    Err(e) => {
                        if inline {
                            self.delete(&child);
                        }
                        return Err(e);
                    }
                }
            }
        };
        // QEMU's bdrv_refresh_total_sectors: a node larger than the
        // maximum (a sparse file on tmpfs can be) would overflow every
        // rounding and i64 size above it.
        let checked = if dev.size() > MAX_LENGTH {
            Err(Error::new(
                "Could not refresh total sector count: File too large",
            ))
        } else {
            // Like QEMU, the node gets its name after its children have theirs.
            match &opts.node_name {
                Some(n) => self.check_name(n).map(|()| n.clone()),
                None => Ok(self.auto_name()),
            }
        };
        let name = match checked {
            Ok(n) => n,
            Err(e) => {
                let inline: Vec<String> = children
                    .iter()
                    .filter(|c| self.nodes.get(c.as_str()).is_some_and(|e| e.implicit))
                    .cloned()
                    .collect();
                for c in inline {
                    self.delete(&c);
                }
                return Err(e);
            }
        };
        self.seq += 1;
        let entry = Entry {
            dev,
            file,
            children,
            implicit: parent.is_some(),
            windowed,
            read_only,
            force_share,
            claims: BTreeMap::new(),
            seq: self.seq,
        };
        self.nodes.insert(name.clone(), entry);
        // A raw window already claims its child (no resize by others).
        if let Err(e) = self.refresh(&name) {
            self.delete(&name);
            return Err(e);
        }
        Ok(name)
    }

    /// Removes a node, its claims on its children, and inline children
    /// nobody else uses.
    fn delete(&mut self, name: &str) {
        let Some(e) = self.nodes.remove(name) else {
            return;
        };
        if let Some(f) = &e.file {
            let _ = f.set_perms(Perms::NONE);
        }
        for c in e.children {
            let _ = self.set_claim(&c, Claimant::Parent(name.to_owned()), None);
            if self
                .nodes
                .get(&c)
                .is_some_and(|ce| ce.implicit && ce.claims.is_empty())
            {
                self.delete(&c);
            }
        }
    }

    /// Sets (or with `None` drops) one claim on `node` and applies the
    /// result down the graph; on failure everything is as before.
    fn set_claim(&mut self, node: &str, who: Claimant, p: Option<Perms>) -> Result<(), Error> {
        let Some(e) = self.nodes.get_mut(node) else {
            return Ok(());
        };
        let old = match p {
            Some(p) => e.claims.insert(who.clone(), p),
            None => e.claims.remove(&who),
        };
        let r = self.refresh(node);
        if r.is_err() {
            if let Some(e) = self.nodes.get_mut(node) {
                match old {
                    Some(o) => e.claims.insert(who, o),
                    None => e.claims.remove(&who),
                };
            }
            let _ = self.refresh(node);
        }
        r
    }

    /// Recomputes a node's permissions from its claims: checks read-only,
    /// sets the image locks, and passes the permissions on to children
    /// (QEMU's `raw_child_perm`).
    fn refresh(&mut self, node: &str) -> Result<(), Error> {
        let Some(e) = self.nodes.get(node) else {
            return Ok(());
        };
        let mut p = e.claims.values().fold(Perms::NONE, |a, &b| a.and(b));
        if e.force_share {
            p.shared = Perms::ALL;
        }
        if p.writes() && e.read_only {
            return Err(Error::new("Block node is read-only"));
        }
        if let Some(f) = &e.file {
            f.set_perms(p)?;
        }
        let child_p = Perms {
            perm: p.perm,
            shared: if e.windowed {
                p.shared & !Perms::RESIZE
            } else {
                p.shared
            },
        };
        let me = Claimant::Parent(node.to_owned());
        for c in e.children.clone() {
            if let Some(ce) = self.nodes.get_mut(&c) {
                ce.claims.insert(me.clone(), child_p);
            }
            self.refresh(&c)?;
        }
        Ok(())
    }
}
