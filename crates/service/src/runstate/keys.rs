//! Interned history keys.
//!
//! A run logs the same few keys thousands of times. Each distinct leaf path
//! gets a small [`KeyId`] the first time it is seen, and per-row work
//! (summary, sampling, metric lookups, encoding the history record) indexes
//! vectors by it instead of hashing and copying strings.

// Measured need: every logged key is looked up here once per row, and
// SipHash was 3% of the handler's time for 10-scalar rows. Keys are the
// run's own metric names: no hash flooding to defend against.
use foldhash::HashMap;

/// A leaf path's index in [`Keys`].
pub type KeyId = u32;

/// What is known about one leaf path.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// `["nested", "deep", "v"]`.
    pub path: Vec<String>,
    /// `nested.deep.v`: the name metric definitions use.
    pub dotted: String,
    /// The path as the `nested_key` fields of a `HistoryItem` or
    /// `SummaryItem` (field 2, repeated string), encoded once.
    pub nested_key_field: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Keys {
    /// One-element paths by their only element: looked up without
    /// allocating.
    top: HashMap<String, KeyId>,
    /// Longer paths.
    nested: HashMap<Vec<String>, KeyId>,
    infos: Vec<KeyInfo>,
}

impl Keys {
    /// Number of distinct keys seen.
    pub fn count(&self) -> usize {
        self.infos.len()
    }

    pub fn info(&self, id: KeyId) -> &KeyInfo {
        &self.infos[id as usize]
    }

    pub fn path(&self, id: KeyId) -> &[String] {
        &self.infos[id as usize].path
    }

    fn add(&mut self, path: Vec<String>) -> KeyId {
        let id = self.infos.len() as KeyId;
        let mut nested_key_field = Vec::new();
        for part in &path {
            nested_key_field.push(0x12); // field 2, length-delimited
            prost::encoding::encode_varint(part.len() as u64, &mut nested_key_field);
            nested_key_field.extend_from_slice(part.as_bytes());
        }
        let dotted = path.join(".");
        self.infos.push(KeyInfo {
            path,
            dotted,
            nested_key_field,
        });
        id
    }

    /// The id of a one-element path.
    pub fn top(&mut self, key: &str) -> KeyId {
        if let Some(id) = self.top.get(key) {
            return *id;
        }
        let id = self.add(vec![key.to_string()]);
        self.top.insert(key.to_string(), id);
        id
    }

    /// The id of any path.
    pub fn path_id<S: AsRef<str>>(&mut self, path: &[S]) -> KeyId {
        if let [only] = path {
            return self.top(only.as_ref());
        }
        let owned: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        if let Some(id) = self.nested.get(&owned) {
            return *id;
        }
        let id = self.add(owned.clone());
        self.nested.insert(owned, id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_one_element_paths_are_keys() {
        let mut keys = Keys::default();
        let loss = keys.top("loss");
        assert_eq!(keys.path_id(&["loss"]), loss);
        let deep = keys.path_id(&["a", "b"]);
        assert_ne!(deep, loss);
        assert_eq!(keys.path_id(&["a".to_string(), "b".to_string()]), deep);
        assert_eq!(keys.info(deep).dotted, "a.b");
        assert_eq!(keys.info(deep).nested_key_field, b"\x12\x01a\x12\x01b");
    }
}
