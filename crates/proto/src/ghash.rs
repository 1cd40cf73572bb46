//! Just enough of GLib's `GHashTable` (glib/ghash.c, open addressing with quadratic
//! probing, `g_str_hash`) to know which key an iteration yields first.
//!
//! QEMU's input visitor keeps the members it has not visited yet in a GHashTable and
//! reports the first one its iterator returns as `Parameter '<key>' is unexpected`. With
//! several unknown members, which one is named depends on this table's layout, so it is
//! reproduced here: the same inserts (in QDict order), the same removals (visited
//! members, in schema order), the same resizes.

const MIN_SHIFT: u32 = 3;
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];
const UNUSED: u32 = 0;
const TOMBSTONE: u32 = 1;

/// GLib's `g_str_hash` (djb2 over *signed* chars), up to the first NUL.
pub fn g_str_hash(key: &[u8]) -> u32 {
    key.iter().take_while(|&&c| c != 0).fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(c as i8 as i32 as u32)
    })
}

struct Table<'a> {
    hashes: Vec<u32>,
    keys: Vec<Option<&'a [u8]>>,
    modulo: u32,
    mask: u32,
    nnodes: usize,
    noccupied: usize,
}

fn closest_shift(mut n: usize) -> u32 {
    let mut i = 0;
    while n != 0 {
        n >>= 1;
        i += 1;
    }
    i
}

impl<'a> Table<'a> {
    fn new() -> Self {
        let mut t = Table {
            hashes: Vec::new(),
            keys: Vec::new(),
            modulo: 0,
            mask: 0,
            nnodes: 0,
            noccupied: 0,
        };
        t.set_shift(MIN_SHIFT);
        t.hashes = vec![UNUSED; 1 << MIN_SHIFT];
        t.keys = vec![None; 1 << MIN_SHIFT];
        t
    }

    fn set_shift(&mut self, shift: u32) {
        self.modulo = PRIME_MOD[shift as usize];
        self.mask = (1u32 << shift) - 1;
    }

    fn size(&self) -> usize {
        self.hashes.len()
    }

    fn to_index(&self, hash: u32) -> u32 {
        hash.wrapping_mul(11) % self.modulo
    }

    fn lookup(&self, key: &[u8], hash: u32) -> usize {
        let mut index = self.to_index(hash);
        let mut step = 0;
        let mut tombstone = None;
        loop {
            let h = self.hashes[index as usize];
            if h == UNUSED {
                return tombstone.unwrap_or(index as usize);
            }
            if h == hash && self.keys[index as usize] == Some(key) {
                return index as usize;
            }
            if h == TOMBSTONE && tombstone.is_none() {
                tombstone = Some(index as usize);
            }
            step += 1;
            index = (index + step) & self.mask;
        }
    }

    fn insert(&mut self, key: &'a [u8]) {
        let hash = g_str_hash(key).max(2);
        let i = self.lookup(key, hash);
        let old = self.hashes[i];
        if old >= 2 {
            return;
        }
        self.hashes[i] = hash;
        self.keys[i] = Some(key);
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let hash = g_str_hash(key).max(2);
        let i = self.lookup(key, hash);
        if self.hashes[i] < 2 {
            return;
        }
        self.hashes[i] = TOMBSTONE;
        self.keys[i] = None;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT)
            || size <= self.noccupied + self.noccupied / 16
        {
            self.resize();
        }
    }

    /// g_hash_table_resize with the in-place rehash of resize_set/resize_map.
    fn resize(&mut self) {
        let old_size = self.size();
        let shift = closest_shift((self.nnodes as f64 * 1.333) as usize).max(MIN_SHIFT);
        self.set_shift(shift);
        let new_size = 1usize << shift;
        if new_size > old_size {
            self.hashes.resize(new_size, UNUSED);
            self.keys.resize(new_size, None);
        }
        let mut moved = vec![false; new_size.max(old_size)];
        for i in 0..old_size {
            let mut node_hash = self.hashes[i];
            if node_hash < 2 {
                self.hashes[i] = UNUSED;
                continue;
            }
            if moved[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.keys[i].take();
            loop {
                let mut step = 0;
                let mut idx = self.to_index(node_hash) as usize;
                while moved[idx] {
                    step += 1;
                    idx = (idx + step) & self.mask as usize;
                }
                moved[idx] = true;
                let replaced = self.hashes[idx];
                self.hashes[idx] = node_hash;
                let evicted = std::mem::replace(&mut self.keys[idx], key);
                if replaced < 2 {
                    break;
                }
                node_hash = replaced;
                key = evicted;
            }
        }
        if new_size < old_size {
            self.hashes.truncate(new_size);
            self.keys.truncate(new_size);
        }
        self.noccupied = self.nnodes;
    }
}

/// The key GLib's iterator returns first after inserting `inserted` (in that order) and
/// removing `removed` (in that order), or `None` when nothing is left.
pub fn first_remaining<'a>(inserted: &[&'a [u8]], removed: &[&[u8]]) -> Option<&'a [u8]> {
    let mut t = Table::new();
    for k in inserted {
        t.insert(k);
    }
    for k in removed {
        t.remove(k);
    }
    t.hashes
        .iter()
        .zip(&t.keys)
        .find(|(h, _)| **h >= 2)
        .and_then(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_hash_uses_signed_chars() {
        assert_eq!(g_str_hash(b""), 5381);
        assert_eq!(g_str_hash(b"a"), 5381 * 33 + 97);
        assert_eq!(g_str_hash(b"\xff"), (5381u32 * 33).wrapping_sub(1));
    }

    #[test]
    fn removal_and_growth_keep_the_survivor() {
        let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        // Everything but one removed: that one is what the iterator yields.
        let removed: Vec<&[u8]> = refs.iter().copied().filter(|k| *k != b"k17").collect();
        assert_eq!(first_remaining(&refs, &removed), Some(&b"k17"[..]));
        assert_eq!(first_remaining(&refs, &refs), None);
    }
}
