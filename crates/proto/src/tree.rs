//! A tree of JSON objects built up leaf by leaf: the run's summary and
//! config, which records change one path at a time.
//!
//! Measured need for more than [`Value`]'s objects (lists of members, as
//! parsed): setting N distinct leaves through them scans each object per
//! insert, O(N²). A row of 100k keys kept the service busy for minutes,
//! and a million metric names over a run never finished. Here every
//! object indexes its members by name and keeps their first-seen order.

use crate::json::Value;
use indexmap::IndexMap;

/// Paths deeper than this are refused: values are bounded the same way by
/// the JSON parser, and writing the tree back recurses once per level.
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    members: IndexMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Value),
    Tree(Tree),
}

impl From<Value> for Node {
    fn from(value: Value) -> Self {
        match value {
            Value::Object(members) => Node::Tree(Tree::from_members(members)),
            other => Node::Leaf(other),
        }
    }
}

impl Tree {
    /// A tree holding an object's members (nested objects become trees, so
    /// that later paths go inside them).
    pub fn from_members(members: Vec<(String, Value)>) -> Self {
        let mut tree = Tree::default();
        for (k, v) in members {
            tree.members.insert(k, Node::from(v));
        }
        tree
    }

    /// Puts `value` at `path`, creating objects on the way and replacing a
    /// non-object in the way; an existing key keeps its place. Returns
    /// false (and changes nothing) for an empty path or one deeper than
    /// [`MAX_DEPTH`].
    pub fn insert(&mut self, path: &[String], value: Value) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        if path.len() > MAX_DEPTH {
            return false;
        }
        let mut tree = self;
        for head in parents {
            let node = tree
                .members
                .entry(head.clone())
                .or_insert_with(|| Node::Tree(Tree::default()));
            if !matches!(node, Node::Tree(_)) {
                *node = Node::Tree(Tree::default());
            }
            let Node::Tree(inner) = node else {
                unreachable!("made a tree above")
            };
            tree = inner;
        }
        tree.members.insert(last.clone(), Node::from(value));
        true
    }

    /// Removes what is at `path`, if anything (the others keep their order).
    pub fn remove(&mut self, path: &[String]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut tree = self;
        for head in parents {
            match tree.members.get_mut(head) {
                Some(Node::Tree(inner)) => tree = inner,
                _ => return,
            }
        }
        tree.members.shift_remove(last);
    }

    /// The tree as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_members())
    }

    /// The top-level members, as JSON values.
    pub fn to_members(&self) -> Vec<(String, Value)> {
        self.members
            .iter()
            .map(|(k, node)| {
                let v = match node {
                    Node::Leaf(v) => v.clone(),
                    Node::Tree(t) => t.to_value(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        self.to_value().to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Vec<String> {
        path.split('.').map(String::from).collect()
    }

    #[test]
    fn leaves_nest_keep_their_first_place_and_replace_what_is_in_the_way() {
        let mut t = Tree::default();
        assert!(t.insert(&p("b"), Value::Int(1)));
        assert!(t.insert(&p("a.x"), Value::Int(2)));
        assert!(t.insert(&p("b"), Value::Int(3)));
        assert!(t.insert(&p("a.y.z"), Value::Bool(true)));
        assert_eq!(t.to_json(), r#"{"b":3,"a":{"x":2,"y":{"z":true}}}"#);
        // A leaf in the way becomes an object; an object value is entered
        // by later paths.
        assert!(t.insert(&p("b.c"), Value::Null));
        assert!(t.insert(&p("o"), Value::parse(r#"{"k":1}"#).unwrap()));
        assert!(t.insert(&p("o.l"), Value::Int(2)));
        assert_eq!(
            t.to_json(),
            r#"{"b":{"c":null},"a":{"x":2,"y":{"z":true}},"o":{"k":1,"l":2}}"#
        );
        t.remove(&p("a.y"));
        t.remove(&p("nothing.here"));
        t.remove(&p("b"));
        assert_eq!(t.to_json(), r#"{"a":{"x":2},"o":{"k":1,"l":2}}"#);
        assert!(!t.insert(&[], Value::Null));
        let deep: Vec<String> = (0..=MAX_DEPTH).map(|i| i.to_string()).collect();
        assert!(!t.insert(&deep, Value::Null), "too deep is refused");
    }

    #[test]
    fn many_distinct_leaves_cost_linear_time() {
        // Quadratic insertion took minutes here; this is well under a second.
        let mut t = Tree::default();
        for i in 0..200_000 {
            t.insert(&[format!("k{i}")], Value::Int(i));
        }
        assert_eq!(t.to_members().len(), 200_000);
    }
}
