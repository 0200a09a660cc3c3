//! Redis Cluster hash slots, and tags that land a key in a chosen slot.
//!
//! A document key in the seed's layout (`task_persistence:task:{id}`) has no
//! hash tag, so it lands wherever its whole name hashes. To keep a document's
//! metadata in the same slot (so one script can change both atomically), the
//! metadata key starts with a `{tag}` that hashes to that slot: [`tag_for`]
//! knows one short tag per slot, for any key, braces in ids included.

use std::sync::LazyLock;

/// Number of hash slots in Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`, honouring `{hash tags}` as Redis does.
pub fn slot(key: &[u8]) -> usize {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    usize::from(crc16(hashed)) % SLOTS
}

/// One short tag per slot: `TAGS[s]` hashes to slot `s`.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags: Vec<Option<String>> = vec![None; SLOTS];
    let mut missing = SLOTS;
    let mut n: u64 = 0;
    while missing > 0 {
        let tag = format!("{n:x}");
        let s = slot(tag.as_bytes());
        if tags[s].is_none() {
            tags[s] = Some(tag);
            missing -= 1;
        }
        n += 1;
    }
    tags.into_iter()
        .map(|t| t.expect("every slot has a tag"))
        .collect()
});

/// A tag (without braces) that hashes to the same slot as `key`.
pub fn tag_for(key: &[u8]) -> &'static str {
    &TAGS[slot(key)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // reference values from the Redis Cluster specification
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn every_key_gets_a_tag_in_its_slot() {
        for key in ["task_persistence:task:abc", "t:{x}y", "t:a}b{", "", "ключ"] {
            let tagged = format!("{{{}}}:meta", tag_for(key.as_bytes()));
            assert_eq!(slot(tagged.as_bytes()), slot(key.as_bytes()), "{key}");
        }
    }
}
