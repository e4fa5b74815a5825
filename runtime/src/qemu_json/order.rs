//! The iteration orders QEMU's messages depend on when more than one
//! thing is wrong, reproduced so that the same message comes out:
//!
//! - a `QDict` (512 buckets by a `tdb_hash`-style hash, newest first
//!   within a bucket) is what keyval and the JSON parser build, so it orders
//!   keyval's list checks and the setting of object properties;
//! - the visitor keeps the keys it has not visited yet in a GLib
//!   `GHashTable` (`g_str_hash`, open addressing with quadratic probing,
//!   resized on insert and remove) and reports the first one it iterates
//!   to as unexpected.
//!
//! Checked against qemu-storage-daemon 10.0.2 (GLib 2.74): e.g.
//! `--blockdev null-co,x=1,y=1` and `null-co,y=1,x=1` both report 'y',
//! `null-co,k1=1,...,k17=1` reports 'k7'.

const QDICT_BUCKETS: u32 = 512;

fn qdict_bucket(key: &str) -> u32 {
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut value = 0x238F_13AFu32.wrapping_mul(len);
    for (i, b) in key.bytes().enumerate() {
        value = value.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % QDICT_BUCKETS
}

/// The order a `QDict` iterates keys inserted in the order given (each
/// key once; replacing a value keeps its place).
pub fn qdict_order<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keyed: Vec<(u32, usize, &str)> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (qdict_bucket(k), i, k))
        .collect();
    // Bucket by bucket; within one, the newest entry first.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keyed.into_iter().map(|(_, _, k)| k).collect()
}

const UNUSED: u32 = 0;
const TOMBSTONE: u32 = 1;
const MIN_SHIFT: u32 = 3;
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];

fn str_hash(key: &str) -> u32 {
    // g_str_hash() reads the bytes as signed char.
    key.bytes().fold(5381u32, |h, b| {
        h.wrapping_mul(33).wrapping_add(i32::from(b as i8) as u32)
    })
}

/// A GLib `GHashTable` of string keys, as far as its iteration order goes.
struct HashTable {
    size: usize,
    modulo: u32,
    mask: usize,
    nnodes: usize,
    noccupied: usize,
    hashes: Vec<u32>,
    keys: Vec<Option<String>>,
}

impl HashTable {
    fn new() -> Self {
        let mut t = HashTable {
            size: 0,
            modulo: 0,
            mask: 0,
            nnodes: 0,
            noccupied: 0,
            hashes: Vec::new(),
            keys: Vec::new(),
        };
        t.set_shift(MIN_SHIFT);
        t.hashes = vec![UNUSED; t.size];
        t.keys = vec![None; t.size];
        t
    }

    fn set_shift(&mut self, shift: u32) {
        self.size = 1 << shift;
        self.modulo = PRIME_MOD[shift as usize];
        self.mask = self.size - 1;
    }

    fn index(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % self.modulo) as usize
    }

    /// `g_hash_table_lookup_node()`: the slot of `key`, or where it would go.
    fn lookup(&self, key: &str) -> (usize, u32) {
        let hash = str_hash(key).max(2);
        let mut i = self.index(hash);
        let mut step = 0;
        let mut tombstone = None;
        while self.hashes[i] != UNUSED {
            if self.hashes[i] == hash && self.keys[i].as_deref() == Some(key) {
                return (i, hash);
            }
            if self.hashes[i] == TOMBSTONE && tombstone.is_none() {
                tombstone = Some(i);
            }
            step += 1;
            i = (i + step) & self.mask;
        }
        (tombstone.unwrap_or(i), hash)
    }

    fn insert(&mut self, key: &str) {
        let (i, hash) = self.lookup(key);
        let old = self.hashes[i];
        if old >= 2 {
            return;
        }
        self.hashes[i] = hash;
        self.keys[i] = Some(key.to_string());
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, key: &str) {
        let (i, _) = self.lookup(key);
        if self.hashes[i] < 2 {
            return;
        }
        self.hashes[i] = TOMBSTONE;
        self.keys[i] = None;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    fn maybe_resize(&mut self) {
        let (size, occupied) = (self.size, self.noccupied);
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT) || size <= occupied + occupied / 16 {
            self.resize();
        }
    }

    /// `g_hash_table_resize()` with `resize_map()`'s in-place rehash.
    fn resize(&mut self) {
        let old_size = self.size;
        let mut n = (self.nnodes as f64 * 1.333) as u64;
        let mut shift = 0;
        while n != 0 {
            n >>= 1;
            shift += 1;
        }
        self.set_shift(shift.max(MIN_SHIFT));
        if self.size > old_size {
            self.hashes.resize(self.size, UNUSED);
            self.keys.resize(self.size, None);
        }
        let mut moved = vec![false; self.size.max(old_size)];
        for i in 0..old_size {
            let mut hash = self.hashes[i];
            if hash < 2 {
                self.hashes[i] = UNUSED;
                continue;
            }
            if moved[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.keys[i].take();
            loop {
                let mut j = self.index(hash);
                let mut step = 0;
                while moved[j] {
                    step += 1;
                    j = (j + step) & self.mask;
                }
                moved[j] = true;
                let replaced = self.hashes[j];
                self.hashes[j] = hash;
                if replaced < 2 {
                    self.keys[j] = key;
                    break;
                }
                hash = replaced;
                key = std::mem::replace(&mut self.keys[j], key);
            }
        }
        self.hashes.truncate(self.size);
        self.keys.truncate(self.size);
        self.noccupied = self.nnodes;
    }

    fn first(&self) -> Option<&str> {
        (0..self.size)
            .find(|&i| self.hashes[i] >= 2)
            .and_then(|i| self.keys[i].as_deref())
    }
}

/// The key QEMU's visitor reports as unexpected: of `keys` (the members
/// present, in insertion order), after the `visited` ones were removed in
/// visiting order, the first the hash table iterates to.
pub fn first_unvisited<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    visited: &[String],
) -> Option<String> {
    let mut t = HashTable::new();
    for k in qdict_order(keys) {
        t.insert(k);
    }
    for k in visited {
        t.remove(k);
    }
    t.first().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn unexpected_member_as_qsd_picks_it() {
        // (members given, members visited, what qemu-storage-daemon 10.0.2
        // reported for `--blockdev null-co,...`)
        let nodes = "driver,node-name,discard,cache,read-only,auto-read-only,force-share,\
                     detect-zeroes,size,latency-ns,read-zeroes";
        for (given, visited, want) in [
            ("driver,x,y", "driver", "y"),
            ("driver,y,x", "driver", "y"),
            ("driver,foo,bar,baz", "driver", "baz"),
            ("driver,baz,bar,foo", "driver", "baz"),
            ("driver,aa,bb,cc,dd,ee,ff,gg,hh,ii", "driver", "ff"),
            ("driver,node-name,zz,qq", "driver,node-name", "zz"),
            (
                "driver,k1,k2,k3,k4,k5,k6,k7,k8,k9,k10,k11,k12,k13,k14,k15,k16,k17",
                "driver",
                "k7",
            ),
            (&format!("{nodes},foo,bar"), nodes, "bar"),
            (&format!("{nodes},aaa,bbb,ccc,ddd"), nodes, "aaa"),
            ("direct,x,y", "direct", "y"),
        ] {
            let given = keys(given);
            assert_eq!(
                first_unvisited(given.iter().map(String::as_str), &keys(visited)).as_deref(),
                Some(want),
                "{given:?}"
            );
        }
        assert_eq!(first_unvisited(["a"], &keys("a")), None);
    }

    #[test]
    fn qdict_order_is_by_bucket() {
        // As QEMU sets iothread properties: aio-max-batch (bucket 139)
        // before poll-grow (144) before poll-max-ns (354).
        assert_eq!(
            qdict_order(["poll-max-ns", "poll-grow", "aio-max-batch"]),
            ["aio-max-batch", "poll-grow", "poll-max-ns"]
        );
        // thread-pool-min and thread-pool-max share bucket 328: newest first.
        assert_eq!(
            qdict_order(["thread-pool-min", "thread-pool-max"]),
            ["thread-pool-max", "thread-pool-min"]
        );
    }
}
