//! A fast, non-keyed hasher for the worker's per-request lookup tables whose keys come from the
//! configuration, never from a client: connection pools by cluster name and host address
//! (`upstream::conn_pool`), the worker's cluster views by name (`http::conn_manager_filter`),
//! per-status-code stats handles (`router::upstream_stats`), the cluster manager's name index.
//!
//! The standard library's default hasher (SipHash-1-3, randomly keyed) resists hash flooding,
//! which only matters for keys an attacker chooses; it costs about 200 instructions per short
//! key, and a proxied request made 14 such lookups (10% of the worker's user-space instructions
//! per request, callgrind). This is the multiply-rotate word hash rustc uses for its own tables
//! (FxHash): a handful of instructions per 8-byte word. Do not use it for a table keyed by
//! request data (header names or values, paths, client addresses): use `std`'s `HashMap` there.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`]: only for keys taken from the configuration.
pub type FastHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The multiply-rotate word hasher (see the module docs).
#[derive(Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

/// An odd constant with well-mixed bits (from the golden ratio), as in FxHash.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let n = rest.len();
        if n > 0 {
            // The last 1-7 bytes as one word, from two overlapping reads (no variable-length
            // copy, which would be a memcpy call); the length keeps "a" and "a\0" apart.
            let word = if n >= 4 {
                u64::from(read_u32(rest, 0)) | u64::from(read_u32(rest, n - 4)) << 32
            } else {
                u64::from(rest[0]) | u64::from(rest[n / 2]) << 8 | u64::from(rest[n - 1]) << 16
            };
            self.add(word ^ ((n as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};
    use std::net::SocketAddr;

    fn hash<T: Hash>(value: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        assert_eq!(hash(&"backend"), hash(&String::from("backend")));
        let names = [
            "a",
            "a\0",
            "b",
            "backend",
            "backend1",
            "backend2",
            "",
            "service_a_long_name",
        ];
        let mut hashes: Vec<u64> = names.iter().map(hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map = FastHashMap::default();
        for i in 0..1000u16 {
            map.insert(i, u32::from(i) * 2);
        }
        assert!((0..1000u16).all(|i| map.get(&i) == Some(&(u32::from(i) * 2))));
        assert_eq!(map.get(&1000), None);
    }
}
