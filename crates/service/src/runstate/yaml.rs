//! `config.yaml` text: laid out as wandb-core writes it (Go's yaml.v3:
//! block mappings and sequences, 4-space indents) and quoted so that a
//! YAML 1.1 reader (PyYAML, what users and the SDK read it with) gets back
//! exactly the strings that were written.
//!
//! Hand-written rather than a YAML crate's emitter. Measured need: the
//! files must match wandb-core's layout (the Rust emitters indent by two
//! and quote by YAML 1.2 rules, under which `yes`, `0x1F` or `2024-01-01`
//! stay plain and PyYAML reads them back as a bool, an int and a date).
//! The emitter is small; the hard part, which scalars a reader would take
//! for something else, follows the YAML 1.1 type definitions below.

use std::sync::LazyLock;

use regex::Regex;
use wandb_proto::json::{self, Value};

/// Plain scalars a YAML 1.1 or 1.2 reader resolves to something other than
/// a string (yaml.org/type: bool, int, float, null, timestamp, merge,
/// value; and YAML 1.2's `1e3`-style floats).
static NOT_A_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
        y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
        |~|null|Null|NULL
        |[-+]?0b[01_]+
        |[-+]?0x[0-9a-fA-F_]+
        |[-+]?0o[0-7]+
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])*
        |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
        |[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}
            (?:(?:[Tt]|[\ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
            (?:[\ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?
        |<<|=
        )$",
    )
    .expect("a valid pattern")
});

/// Whether `s` can be written without quotes and read back as itself.
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    !"-?:,[]{}#&*!|>'\"%@` \t".contains(first)
        && !s.ends_with([' ', '\t', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control() || c == '\u{feff}')
        && !NOT_A_STRING.is_match(s)
}

fn string(s: &str, out: &mut String) {
    if plain(s) {
        out.push_str(s);
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        json::write_str(s, out);
    }
}

fn scalar(value: &Value, out: &mut String) {
    match value {
        Value::Str(s) => string(s, out),
        Value::Float(f) if f.is_nan() => out.push_str(".nan"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { ".inf" } else { "-.inf" }),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        other => other.write(out),
    }
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// What follows `key:` for a key at column `col`. Nested entries start at
/// the next multiple of four (yaml.v3 aligns to its indent, also under a
/// mapping that began after a sequence's `- `).
fn after_key(value: &Value, col: usize, out: &mut String) {
    let nested = (col / 4 + 1) * 4;
    match value {
        Value::Object(members) if !members.is_empty() => {
            out.push('\n');
            mapping(members, nested, false, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            sequence(items, nested, false, out);
        }
        other => {
            out.push(' ');
            scalar(other, out);
            out.push('\n');
        }
    }
}

/// yaml.v3's order of mapping keys (wandb-core's config is Go maps, which
/// yaml.v3 sorts): runs of digits compare as numbers, a letter sorts after
/// any other character except after digits, and other characters compare
/// by code point (`_wandb` comes first); a key that is a prefix of another
/// sorts first.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut digits = false;
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            let a_first = if digits { al } else { bl };
            return if a_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            // Leading zeros after other digits count as part of a number.
            if ar[..i]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .any(|c| *c != '0')
            {
                an = 1;
                bn = 1;
            }
        }
        let (ai, an) = number_at(&ar, i, an);
        let (bi, bn) = number_at(&br, i, bn);
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

/// The run of ASCII digits from `i` read onto `n` (decimal): where it ends,
/// and the number.
fn number_at(chars: &[char], i: usize, mut n: i64) -> (usize, i64) {
    let mut end = i;
    while let Some(d) = chars.get(end).and_then(|c| c.to_digit(10)) {
        n = n.wrapping_mul(10).wrapping_add(i64::from(d));
        end += 1;
    }
    (end, n)
}

/// Members at column `col`, in yaml.v3's key order; the first one already
/// positioned when `inline` (after a sequence's `- `).
fn mapping(members: &[(String, Value)], col: usize, inline: bool, out: &mut String) {
    let mut members: Vec<&(String, Value)> = members.iter().collect();
    members.sort_by(|a, b| key_order(&a.0, &b.0));
    for (i, (k, v)) in members.into_iter().enumerate() {
        if !(inline && i == 0) {
            indent(col, out);
        }
        string(k, out);
        out.push(':');
        after_key(v, col, out);
    }
}

fn sequence(items: &[Value], col: usize, inline: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if !(inline && i == 0) {
            indent(col, out);
        }
        out.push_str("- ");
        match item {
            Value::Object(members) if !members.is_empty() => mapping(members, col + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => sequence(inner, col + 2, true, out),
            other => {
                scalar(other, out);
                out.push('\n');
            }
        }
    }
}

/// A whole document of top-level `key: value` entries.
pub(crate) fn document(entries: &[(String, Value)]) -> String {
    let mut out = String::new();
    mapping(entries, 0, false, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_a_yaml_1_1_reader_would_take_for_something_else_are_quoted() {
        for s in [
            "True",
            "NULL",
            "Yes",
            "n",
            "off",
            "~",
            "0x1F",
            "1_000",
            "0o17",
            "012",
            "-3",
            "+1.5",
            ".5",
            "1e3",
            "1.0e+3",
            ".inf",
            "-.Inf",
            ".NaN",
            "2024-01-01",
            "2001-12-14t21:59:43.10-05:00",
            "1:30",
            "<<",
            "=",
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "-x",
            "#c",
            "[x]",
            "x:",
            "new\nline",
        ] {
            assert!(!plain(s), "{s:?} must be quoted");
        }
        for s in [
            "adam",
            "0.31.0",
            "linux-x86_64",
            "/",
            "/a/b",
            "e",
            "inf",
            "nan",
            "yess",
            "a:b",
            "a#b",
            "3.11.7",
            "Ünïcode",
            "x y",
        ] {
            assert!(plain(s), "{s:?} can stay plain");
        }
    }

    #[test]
    fn block_layout_as_wandb_core_writes_it() {
        let v = Value::parse(
            r#"{"_wandb":{"value":{"m":[{"1":"a.b","6":[3]}],"t":{"3":[2,7]},"e":{}}},"True":{"value":1},"lr":{"value":[]},"s":{"value":"yes"}}"#,
        )
        .unwrap();
        let Value::Object(entries) = v else {
            unreachable!()
        };
        assert_eq!(
            document(&entries),
            "_wandb:\n    value:\n        e: {}\n        m:\n            - \"1\": a.b\n              \"6\":\n                - 3\n        t:\n            \"3\":\n                - 2\n                - 7\n\"True\":\n    value: 1\nlr:\n    value: []\ns:\n    value: \"yes\"\n"
        );
    }

    #[test]
    fn keys_in_yaml_v3_order() {
        let mut keys = vec![
            "lr", "_wandb", "a10", "a9", "B", "b", "a_b", "ab", "a", "x2y", "x10y", "1", "10", "2",
        ];
        keys.sort_by(|a, b| key_order(a, b));
        assert_eq!(
            keys,
            [
                "_wandb", "1", "2", "10", "B", "a", "a_b", "a9", "a10", "ab", "b", "lr", "x2y",
                "x10y"
            ]
        );
    }
}
