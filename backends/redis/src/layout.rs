//! Redis key names.
//!
//! In the seed namespace (`task` by default) documents and the request index
//! use the Python system's exact layout, so both systems can share a Redis:
//!
//! | what | key | type |
//! |---|---|---|
//! | document | `{prefix}:task:{key}` | string: the document bytes |
//! | request index | `{prefix}:request_index:{term}` | set of keys |
//!
//! Everything this library adds lives under a second segment starting with
//! `~`, which the seed never uses, and names its namespace (and index) with a
//! length prefix, so no two namespaces, keys, indexes or terms can collide:
//!
//! | what | key | type |
//! |---|---|---|
//! | metadata | `{prefix}:~m:{len}:{ns}:{key}` (on a cluster `{tag}` first, `tag` hashing to the document's slot) | hash: `v` version, `c` created, `t` index keys (JSON), `x` had a TTL |
//! | document, other namespaces | `{prefix}:~d:{len}:{ns}:{key}` | string |
//! | index, other namespaces or indexes | `{prefix}:~i:{len}:{ns}:{len}:{index}:{term}` | set of keys |
//! | key order | `{prefix}:~k:{len}:{ns}` | sorted set, all scores 0 (lexicographic) |
//! | creation order | `{prefix}:~c:{len}:{ns}` | sorted set scored by creation stamp |
//! | an index set's expiries | `{prefix}:~e:` then the index key without `{prefix}:` | sorted set: the set's members with a TTL, scored by expiry (ms) |
//! | index sets counted from their expiries | `{prefix}:~t:{len}:{ns}` | set of index keys |

use persistence_core::store::TASK_REQUEST_TERMS;

/// The seed's request index name.
pub const SEED_INDEX: &str = "request_index";

/// Key names for one prefix and seed namespace.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
    seed_ns: String,
    cluster: bool,
    other_writers: bool,
}

fn lp(s: &str) -> String {
    format!("{}:{s}", s.len())
}

impl Layout {
    /// A layout under `prefix` whose namespace `seed_ns` uses the seed's keys.
    pub fn new(prefix: &str, seed_ns: &str) -> Self {
        Layout {
            prefix: prefix.to_string(),
            seed_ns: seed_ns.to_string(),
            cluster: false,
            other_writers: true,
        }
    }

    /// The same layout, saying whether another system also writes the seed
    /// namespace (default true); without, [`term_rule`](Self::term_rule)
    /// gives no rule and the scripts trust this library's metadata alone.
    pub fn with_other_writers(self, other_writers: bool) -> Self {
        Layout {
            other_writers,
            ..self
        }
    }

    /// The same layout for Redis Cluster: metadata keys start with a
    /// `{tag}` that puts them in their document's hash slot.
    pub fn for_cluster(prefix: &str, seed_ns: &str) -> Self {
        Layout {
            cluster: true,
            ..Layout::new(prefix, seed_ns)
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Document keys of `ns` are this followed by the key.
    pub fn doc_prefix(&self, ns: &str) -> String {
        if ns == self.seed_ns {
            format!("{}:{ns}:", self.prefix)
        } else {
            format!("{}:~d:{}:", self.prefix, lp(ns))
        }
    }

    /// Metadata keys of `ns` are this followed by the key.
    pub fn meta_prefix(&self, ns: &str) -> String {
        format!("{}:~m:{}:", self.prefix, lp(ns))
    }

    /// Key of a document.
    pub fn doc(&self, ns: &str, key: &str) -> String {
        self.doc_prefix(ns) + key
    }

    /// Key of a document's metadata (in cluster mode, in the document's slot).
    pub fn meta(&self, ns: &str, key: &str) -> String {
        let base = self.meta_prefix(ns) + key;
        if self.cluster {
            let tag = crate::slots::tag_for(self.doc(ns, key).as_bytes());
            format!("{{{tag}}}{base}")
        } else {
            base
        }
    }

    /// Key of the set of documents carrying `term` in `index`.
    pub fn index(&self, ns: &str, index: &str, term: &str) -> String {
        if ns == self.seed_ns && index == SEED_INDEX {
            format!("{}:{SEED_INDEX}:{term}", self.prefix)
        } else {
            format!("{}:~i:{}:{}:{term}", self.prefix, lp(ns), lp(index))
        }
    }

    /// Whether the writes to `ns` keep each index set's expiries (the
    /// members with a TTL, scored by expiry), so a count can drop the
    /// expired ones without looking at every member: on one server, in
    /// namespaces only this library writes (no [`term_rule`](Self::term_rule)).
    pub fn keeps_expiries(&self, ns: &str) -> bool {
        !self.cluster && !self.has_rule(ns)
    }

    /// Whether `ns` has a [`term_rule`](Self::term_rule): the seed
    /// namespace, while another system also writes it.
    fn has_rule(&self, ns: &str) -> bool {
        ns == self.seed_ns && self.other_writers
    }

    /// The scripts' argument naming where `ns`'s expiry sets live: the
    /// prefix of every expiry key where [`keeps_expiries`](Self::keeps_expiries),
    /// else empty (none kept). The scripts name an index set's expiry key
    /// this followed by the index key without `{prefix}:`, as
    /// [`expiries`](Self::expiries) does.
    pub fn expiry_arg(&self, ns: &str) -> String {
        if self.keeps_expiries(ns) {
            format!("{}:~e:", self.prefix)
        } else {
            String::new()
        }
    }

    /// Key of the sorted set of `index_key`'s members that have a TTL,
    /// scored by when they expire (ms since the epoch).
    pub fn expiries(&self, index_key: &str) -> String {
        let rest = index_key.get(self.prefix.len() + 1..).unwrap_or_default();
        format!("{}:~e:{rest}", self.prefix)
    }

    /// Key of the set of `ns`'s index sets whose counts trust their
    /// expiry sets: a set enters it once a count has checked every member
    /// (and given each one with a TTL its expiry entry), so sets written
    /// before expiry sets existed are never counted from them unchecked.
    pub fn counted(&self, ns: &str) -> String {
        format!("{}:~t:{}", self.prefix, lp(ns))
    }

    /// The index term an index key of `ns` stands for ([`index`](Self::index)
    /// read backwards), `None` for a key that is not one of `ns`'s.
    pub fn parse_index(&self, ns: &str, key: &str) -> Option<persistence_core::backend::IndexTerm> {
        use persistence_core::backend::IndexTerm;
        if ns == self.seed_ns {
            if let Some(term) = key.strip_prefix(&format!("{}:{SEED_INDEX}:", self.prefix)) {
                return Some(IndexTerm::new(SEED_INDEX, term));
            }
        }
        let rest = key.strip_prefix(&format!("{}:~i:{}:", self.prefix, lp(ns)))?;
        let (len, rest) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let index = rest.get(..len)?;
        let term = rest.get(len..)?.strip_prefix(':')?;
        Some(IndexTerm::new(index, term))
    }

    /// The namespace a key-order set's key names (`by_key` read backwards).
    pub fn parse_by_key(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&format!("{}:~k:", self.prefix))?;
        let (len, ns) = rest.split_once(':')?;
        (len.parse::<usize>().ok()? == ns.len()).then(|| ns.to_string())
    }

    /// The script arguments of `ns`'s term rule for the seed's request
    /// index (`list`, `field`, index key prefix), or three empty strings:
    /// in the seed namespace, which the Python system also writes, the
    /// scripts derive a document's request-index entries from its JSON
    /// (the task store's [`TASK_REQUEST_TERMS`]), so entries implied by a
    /// document this library did not write are removed exactly too.
    pub fn term_rule(&self, ns: &str) -> [String; 3] {
        if self.has_rule(ns) {
            let rule = TASK_REQUEST_TERMS;
            debug_assert_eq!(rule.index, SEED_INDEX);
            [
                rule.list.to_string(),
                rule.field.to_string(),
                self.index(ns, SEED_INDEX, ""),
            ]
        } else {
            Default::default()
        }
    }

    /// [`term_rule`](Self::term_rule) for a lookup in `index`: the rule
    /// only when `index` is the one it derives.
    pub fn lookup_rule(&self, ns: &str, index: &str) -> [String; 3] {
        if index == SEED_INDEX {
            self.term_rule(ns)
        } else {
            Default::default()
        }
    }

    /// Key of the namespace's key-ordered set.
    pub fn by_key(&self, ns: &str) -> String {
        format!("{}:~k:{}", self.prefix, lp(ns))
    }

    /// Key of the namespace's creation-ordered set.
    pub fn by_created(&self, ns: &str) -> String {
        format!("{}:~c:{}", self.prefix, lp(ns))
    }

    /// Glob patterns (for `SCAN MATCH`) covering every key of `ns`.
    pub fn patterns(&self, ns: &str) -> Vec<String> {
        let mut out = vec![
            glob_escape(&self.doc_prefix(ns)) + "*",
            glob_escape(&self.meta_prefix(ns)) + "*",
            glob_escape(&format!("{}:~i:{}:", self.prefix, lp(ns))) + "*",
            glob_escape(&format!("{}:~e:~i:{}:", self.prefix, lp(ns))) + "*",
            glob_escape(&self.by_key(ns)),
            glob_escape(&self.by_created(ns)),
            glob_escape(&self.counted(ns)),
        ];
        if ns == self.seed_ns {
            out.push(glob_escape(&format!("{}:{SEED_INDEX}:", self.prefix)) + "*");
            out.push(glob_escape(&format!("{}:~e:{SEED_INDEX}:", self.prefix)) + "*");
        }
        out
    }
}

/// Escapes glob metacharacters for `SCAN MATCH`.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_order_keys_read_back() {
        use persistence_core::backend::IndexTerm;
        let l = Layout::new("p", "task");
        for (ns, index, term) in [
            ("task", "request_index", "r:1"),
            ("task", "other", "x"),
            ("runs", "request_index", "a:b:c"),
            ("n:s", "i:x", ""),
        ] {
            let key = l.index(ns, index, term);
            assert_eq!(
                l.parse_index(ns, &key),
                Some(IndexTerm::new(index, term)),
                "{key}"
            );
            assert_eq!(l.parse_by_key(&l.by_key(ns)).as_deref(), Some(ns));
        }
        assert_eq!(l.parse_index("other", &l.index("runs", "i", "t")), None);
    }

    #[test]
    fn expiry_keys_follow_their_index_keys() {
        let l = Layout::new("p:x", "task").with_other_writers(false);
        let ik = l.index("runs", "status", "a:b");
        assert_eq!(l.expiries(&ik), "p:x:~e:~i:4:runs:6:status:a:b");
        // the scripts' rule: the argument, then the index key after `{prefix}:`
        let arg = l.expiry_arg("runs");
        assert_eq!(format!("{arg}{}", &ik[arg.len() - 3..]), l.expiries(&ik));
        assert_eq!(
            l.expiries(&l.index("task", SEED_INDEX, "r1")),
            "p:x:~e:request_index:r1"
        );
        assert!(l.keeps_expiries("task"));
        let shared = Layout::new("p", "task");
        assert!(!shared.keeps_expiries("task") && shared.expiry_arg("task").is_empty());
        assert!(shared.keeps_expiries("runs"));
        assert!(!Layout::for_cluster("p", "task").keeps_expiries("runs"));
        let not_index = [l.doc("runs", "k"), l.meta("runs", "k"), l.by_key("runs")];
        assert!(!not_index.contains(&l.expiries(&ik)));
    }

    #[test]
    fn seed_namespace_uses_the_python_layout() {
        let l = Layout::new("task_persistence", "task");
        assert_eq!(l.doc("task", "abc"), "task_persistence:task:abc");
        assert_eq!(
            l.index("task", "request_index", "r1"),
            "task_persistence:request_index:r1"
        );
    }

    #[test]
    fn the_term_rule_applies_to_the_seed_namespace_with_other_writers_only() {
        let l = Layout::new("p", "task");
        assert_eq!(
            l.term_rule("task"),
            ["items", "request_id", "p:request_index:"].map(String::from)
        );
        assert_eq!(l.lookup_rule("task", "other"), <[String; 3]>::default());
        assert_eq!(l.term_rule("other"), <[String; 3]>::default());
        let alone = Layout::new("p", "task").with_other_writers(false);
        assert_eq!(alone.term_rule("task"), <[String; 3]>::default());
    }

    #[test]
    fn cluster_metadata_shares_the_document_slot() {
        let l = Layout::for_cluster("task_persistence", "task");
        for key in ["abc", "a{b}c", "}{", ""] {
            let doc = crate::slots::slot(l.doc("task", key).as_bytes());
            assert_eq!(
                crate::slots::slot(l.meta("task", key).as_bytes()),
                doc,
                "{key}"
            );
        }
    }

    #[test]
    fn other_namespaces_cannot_collide() {
        let l = Layout::new("p", "task");
        assert_ne!(l.doc("a", "b:c"), l.doc("a:b", "c"));
        assert_ne!(l.index("n", "a", "b:c"), l.index("n", "a:b", "c"));
        assert_ne!(
            l.doc("request_index", "x"),
            l.index("task", "request_index", "x")
        );
        assert_ne!(l.doc("task", "~m:1:x"), l.meta("task", "x"));
        assert!(!l.doc("task", "x").starts_with(&l.meta_prefix("task")));
    }
}
