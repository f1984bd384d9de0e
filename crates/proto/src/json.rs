//! The JSON dialect of wandb's `value_json` fields.
//!
//! The SDK serialises values with Python's `json`, which writes `NaN`,
//! `Infinity` and `-Infinity` as bare literals; `serde_json` rejects those,
//! and history values are full of them (a diverging loss), so this module
//! has its own small parser and value type.
//!
//! Numbers are written the way wandb-core writes them (Go's
//! `strconv.FormatFloat(x, 'g', -1, 64)`: shortest round-trip digits,
//! exponent form below 1e-4 and from 1e6 on), so our files read like the
//! reference's: `1e+06`, `1.5e-05`, `1` for `1.0`. Integers that fit in an
//! `i64` stay integers.
//!
//! W&B's Go tools read and write the same values a little differently, and
//! `leet inspect` matches them byte for byte with this one type:
//! [`Value::parse_lenient`] reads `value_json` as W&B's inspector does,
//! [`Value::sort_keys`] orders objects as a Go map, and
//! [`Value::write_with`] writes in another [`Format`] (Go's
//! `encoding/json`, on one line or indented).

use std::fmt::Write as _;

/// A parsed JSON value. Objects keep their key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Text that is not JSON (in the wandb dialect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;
/// [`Value::parse_lenient`]'s limit: W&B's inspector decodes deeper values.
const MAX_DEPTH_LENIENT: usize = 512;

/// How [`Value::write_with`] writes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub escapes: Escapes,
    pub floats: Floats,
    /// Go's `MarshalIndent` with this unit per level (and `": "` after a
    /// key); `None`: all on one line.
    pub indent: Option<&'static str>,
}

impl Format {
    /// wandb-core's own: what [`Value::write`] writes.
    pub const WANDB: Format = Format {
        escapes: Escapes::Wandb,
        floats: Floats::Wandb,
        indent: None,
    };
    /// Go's `encoding/json` (without HTML escaping), on one line.
    pub const GO_JSON: Format = Format {
        escapes: Escapes::GoJson,
        floats: Floats::GoJson,
        indent: None,
    };
    /// Go's `json.MarshalIndent` with two spaces a level.
    pub const GO_JSON_INDENTED: Format = Format {
        indent: Some("  "),
        ..Format::GO_JSON
    };
}

/// Which characters a string literal escapes, besides `"`, `\`, newline,
/// carriage return and tab (`\n`, `\r`, `\t`) and the other control
/// characters (`\u00XX`), which all do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// None more: wandb-core's ([`write_str`]).
    Wandb,
    /// Backspace and form feed in JSON's short forms, `\b` and `\f`.
    Short,
    /// [`Escapes::Short`], and U+2028 and U+2029 as `\u2028`, `\u2029`:
    /// Go's `encoding/json`.
    GoJson,
}

/// How floats are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floats {
    /// Go's shortest `%g`, with bare `NaN`, `Infinity` and `-Infinity`
    /// ([`write_float`]).
    Wandb,
    /// Go's `encoding/json`: positional from 1e-6 up to 1e21, else `1e-7`,
    /// `1e+21`; `NaN` and `±Infinity` as the strings `"NaN"`, `"Infinity"`
    /// and `"-Infinity"` (which `encoding/json` itself refuses; W&B's
    /// inspector writes them so).
    GoJson,
}

impl Value {
    /// Parses one value; surrounding whitespace is allowed, trailing text is not.
    pub fn parse(text: &str) -> Result<Value, JsonError> {
        Parser::new(text, false).document()
    }

    /// Parses one value as W&B's inspector reads `value_json`: a number is
    /// any run of number-like characters that Go's `ParseFloat` reads
    /// (leading zeros, `1.`, `-.5`, `-inf`, overflow to infinity), an
    /// integer (`-0` too) when it is one that fits; values nest up to 512
    /// deep. Otherwise as [`Value::parse`].
    pub fn parse_lenient(text: &str) -> Result<Value, JsonError> {
        Parser::new(text, true).document()
    }

    /// Puts every object's members in key order (bytewise), a repeated key
    /// once with its last value: how Go holds and writes a map.
    pub fn sort_keys(&mut self) {
        match self {
            Value::Array(items) => items.iter_mut().for_each(Value::sort_keys),
            Value::Object(members) => {
                // A stable sort: of a repeated key, the last stays last.
                members.sort_by(|a, b| a.0.cmp(&b.0));
                let mut kept: Vec<(String, Value)> = Vec::with_capacity(members.len());
                for (key, mut value) in members.drain(..) {
                    value.sort_keys();
                    match kept.last_mut() {
                        Some(last) if last.0 == key => last.1 = value,
                        _ => kept.push((key, value)),
                    }
                }
                *members = kept;
            }
            _ => {}
        }
    }

    /// The number as `f64`, for integers and floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The integer, for integers.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text, for strings.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An object's member (the first of that name).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }

    /// Serialises the value in wandb-core's style.
    pub fn write(&self, out: &mut String) {
        self.write_with(out, Format::WANDB);
    }

    /// The value serialised as a new string.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Serialises the value in `format` (members in the order they are:
    /// see [`Value::sort_keys`]).
    pub fn write_with(&self, out: &mut String, format: Format) {
        self.write_at(out, format, 0);
    }

    fn write_at(&self, out: &mut String, format: Format, depth: usize) {
        let newline = |out: &mut String, depth: usize| {
            if let Some(unit) = format.indent {
                out.push('\n');
                for _ in 0..depth {
                    out.push_str(unit);
                }
            }
        };
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => match format.floats {
                Floats::Wandb => write_float(*f, out),
                Floats::GoJson if f.is_finite() => write_go_json_float(*f, out),
                Floats::GoJson => {
                    out.push('"');
                    write_float(*f, out);
                    out.push('"');
                }
            },
            Value::Str(s) => write_str_with(s, format.escapes, out),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write_at(out, format, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            Value::Object(members) if members.is_empty() => out.push_str("{}"),
            Value::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    write_str_with(k, format.escapes, out);
                    out.push(':');
                    if format.indent.is_some() {
                        out.push(' ');
                    }
                    v.write_at(out, format, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

/// A finite, non-zero float's shortest round-trip digits (no leading or
/// trailing zeros) and the decimal exponent of the first.
struct Digits {
    buf: [u8; 24],
    len: usize,
    exp: i32,
}

impl Digits {
    /// From ryu, which gives the shortest digits (ties to even, as Go's
    /// `FormatFloat` and Python's `repr`) without allocating.
    #[inline]
    fn of<F: ryu::Float>(abs: F) -> Digits {
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(abs);
        // ryu writes `123.45`, `0.001` or `1.5e-7`: read back its digits and
        // decimal exponent (of the first digit).
        let (mantissa, exp_part) = match text.split_once('e') {
            Some((m, e)) => (m, e.parse::<i32>().expect("ryu writes an integer exponent")),
            None => (text, 0),
        };
        let mut digits = Digits {
            buf: [0; 24],
            len: 0,
            exp: 0,
        };
        let mut int_len = 0i32;
        let mut seen_point = false;
        let mut leading_zeros = 0i32;
        for b in mantissa.bytes() {
            match b {
                b'.' => seen_point = true,
                b'0' if digits.len == 0 => {
                    // Zeros before the first significant digit.
                    if !seen_point {
                        int_len += 1;
                    }
                    leading_zeros += 1;
                }
                d => {
                    digits.buf[digits.len] = d;
                    digits.len += 1;
                    if !seen_point {
                        int_len += 1;
                    }
                }
            }
        }
        while digits.len > 1 && digits.buf[digits.len - 1] == b'0' {
            digits.len -= 1;
        }
        digits.exp = int_len - 1 - leading_zeros + exp_part;
        digits
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits")
    }

    /// `d.ddde±XX`: at least `min_exp_digits` exponent digits.
    fn write_exponent(&self, min_exp_digits: u32, out: &mut String) {
        let digits = self.text();
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if self.exp < 0 { '-' } else { '+' });
        let abs = self.exp.unsigned_abs();
        if abs >= 100 {
            out.push(char::from(b'0' + (abs / 100) as u8));
        }
        if abs >= 10 || min_exp_digits >= 2 {
            out.push(char::from(b'0' + (abs / 10 % 10) as u8));
        }
        out.push(char::from(b'0' + (abs % 10) as u8));
    }

    /// Positional: `123.45`, `0.00012`, `1200`.
    fn write_positional(&self, out: &mut String) {
        let digits = self.text();
        if self.exp < 0 {
            out.push_str("0.");
            for _ in 0..(-self.exp - 1) {
                out.push('0');
            }
            out.push_str(digits);
            return;
        }
        let int_len = self.exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }

    /// Go's `%g` layout: exponent form below 1e-4 and from 1e6 on, with at
    /// least two exponent digits (`e+06`, `e-308`).
    fn write_g(&self, out: &mut String) {
        if (-4..6).contains(&self.exp) {
            self.write_positional(out);
        } else {
            self.write_exponent(2, out);
        }
    }
}

/// Writes `NaN`, `Infinity`, `-Infinity` or a zero; false for others.
fn write_float_special(f: f64, out: &mut String) -> bool {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
    } else {
        return false;
    }
    true
}

/// Writes a float like Go's `FormatFloat(f, 'g', -1, 64)`, with wandb's
/// `NaN`/`Infinity` literals.
///
/// On the hot path of every logged scalar (SDK and service): `ryu` gives
/// the shortest round-trip digits without allocating, and this lays them
/// out Go's way. Measured need: with `format!("{f:e}")` and a digit string,
/// float text was a fifth of the Rust SDK's `log()` time.
pub fn write_float(f: f64, out: &mut String) {
    if write_float_special(f, out) {
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    Digits::of(f.abs()).write_g(out);
}

/// A float32 like Go's `FormatFloat(f, 'g', -1, 32)`: its own shortest
/// digits (`0.1`, not `0.10000000149011612`), wandb's literals.
pub fn write_float32(f: f32, out: &mut String) {
    if write_float_special(f64::from(f), out) {
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    Digits::of(f.abs()).write_g(out);
}

/// A finite float as Go's `encoding/json` writes a float64.
fn write_go_json_float(f: f64, out: &mut String) {
    if write_float_special(f, out) {
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let digits = Digits::of(f.abs());
    if (1e-6..1e21).contains(&f.abs()) {
        digits.write_positional(out);
    } else {
        // `1e-7`, not `1e-07` (`encoding/json` trims that zero), but `1e+21`.
        digits.write_exponent(if digits.exp < 0 { 1 } else { 2 }, out);
    }
}

/// Writes a JSON string literal (wandb-core's escapes).
pub fn write_str(s: &str, out: &mut String) {
    write_str_with(s, Escapes::Wandb, out);
}

/// Writes a JSON string literal with `escapes`.
pub fn write_str_with(s: &str, escapes: Escapes, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' if escapes != Escapes::Wandb => out.push_str("\\b"),
            '\u{c}' if escapes != Escapes::Wandb => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' if escapes == Escapes::GoJson => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// [`Value::parse_lenient`]'s numbers and depth.
    lenient: bool,
}

impl Parser<'_> {
    fn new(text: &str, lenient: bool) -> Parser<'_> {
        Parser {
            s: text.as_bytes(),
            pos: 0,
            lenient,
        }
    }

    /// One value and nothing after it but whitespace.
    fn document(mut self) -> Result<Value, JsonError> {
        let v = self.value(0)?;
        self.ws();
        if self.pos != self.s.len() {
            return Err(self.err("trailing characters"));
        }
        Ok(v)
    }

    fn err(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        let max_depth = if self.lenient {
            MAX_DEPTH_LENIENT
        } else {
            MAX_DEPTH
        };
        if depth > max_depth {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.s.get(self.pos) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Value::Object(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.pos) != Some(&b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return Err(self.err("expected ':'"));
                    }
                    let v = self.value(depth + 1)?;
                    members.push((key, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Value::Object(members));
                    }
                    return Err(self.err("expected ',' or '}'"));
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    return Err(self.err("expected ',' or ']'"));
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b'N') if self.eat("NaN") => Ok(Value::Float(f64::NAN)),
            Some(b'I') if self.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            Some(b'-' | b'0'..=b'9') if self.lenient => self.lenient_number(),
            Some(b'-') if self.eat("-Infinity") => Ok(Value::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// A number in JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    /// (Rust's float parser alone would also take `-.0` or `1.`).
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while let Some(b'0'..=b'9') = p.s.get(p.pos) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.s.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if self.s.get(self.pos) == Some(&b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err(self.err("expected digits"));
        }
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.') {
            is_float = true;
            self.pos += 1;
            if !digits(self) {
                return Err(self.err("expected digits after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            is_float = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.s.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.err("expected exponent digits"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII digits");
        if !is_float && let Ok(i) = text.parse::<i64>() {
            // `-0` keeps its sign, as a float (how Go reads it, and how
            // a negative zero is written back).
            if i == 0 && text.starts_with('-') {
                return Ok(Value::Float(-0.0));
            }
            return Ok(Value::Int(i));
        }
        text.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| JsonError {
                offset: start,
                reason: "invalid number",
            })
    }

    /// [`Value::parse_lenient`]'s number: the run of number-like
    /// characters, an integer if it is one that fits, else a decimal as
    /// Go's `ParseFloat` reads it (`1.`, `-.5`, `1e5`, `-inf`; overflow is
    /// infinite).
    fn lenient_number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-' | b'_') =
            self.s.get(self.pos)
        {
            self.pos += 1;
        }
        let invalid = JsonError {
            offset: start,
            reason: "invalid number",
        };
        let token = std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII");
        let (negative, unsigned) = match token.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, token),
        };
        if !unsigned.is_empty()
            && unsigned.bytes().all(|b| b.is_ascii_digit())
            && let Ok(i) = token.parse::<i64>()
        {
            return Ok(Value::Int(i));
        }
        if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
            return Ok(Value::Float(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        // Digits, one point, an exponent; at least one digit before `e`.
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let mantissa_ok = mantissa.bytes().any(|b| b.is_ascii_digit())
            && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && mantissa.bytes().filter(|&b| b == b'.').count() <= 1;
        let exponent_ok = exponent.is_none_or(|e| {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        });
        if !(mantissa_ok && exponent_ok) {
            return Err(invalid);
        }
        token.parse::<f64>().map(Value::Float).map_err(|_| invalid)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let hex = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or(self.err("short \\u escape"))?;
        let hex = std::str::from_utf8(hex).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(hex, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes at once.
            let run_start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = std::str::from_utf8(&self.s[run_start..self.pos])
                .map_err(|_| self.err("invalid UTF-8"))?;
            out.push_str(run);
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = *self
                        .s
                        .get(self.pos)
                        .ok_or(self.err("unterminated escape"))?;
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                let high = self.pos;
                                self.pos += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                                } else {
                                    // A lone high surrogate: U+FFFD, and the
                                    // next escape is read on its own (as Go
                                    // reads it).
                                    self.pos = high;
                                }
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: f64) -> String {
        let mut s = String::new();
        write_float(f, &mut s);
        s
    }

    #[test]
    fn floats_are_written_like_go() {
        let cases = [
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.5e-05, "1.5e-05"),
            (1795673781.014062, "1.795673781014062e+09"),
            (123456.0, "123456"),
            (999999.9, "999999.9"),
            (0.0001, "0.0001"),
            (2.5, "2.5"),
            (1.0, "1"),
            (100.0, "100"),
            (-0.25, "-0.25"),
            (2f64.powi(70), "1.1805916207174113e+21"),
            (1e100, "1e+100"),
            (0.1, "0.1"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (0.0, "0"),
            // A tie between two shortest digit strings, rounded to even as
            // Go's FormatFloat and Python's repr do.
            (-1.730_163_472_976_078_2e15, "-1.7301634729760782e+15"),
        ];
        for (f, want) in cases {
            assert_eq!(fmt(f), want, "{f}");
        }
    }

    #[test]
    fn parses_the_wandb_dialect() {
        let v = Value::parse(r#" {"a": [1, 2.5, NaN, -Infinity, Infinity], "b": {"c": null}, "d": "x\"\u00e9\ud83d\ude00", "e": true} "#)
            .unwrap();
        let Value::Object(m) = &v else { panic!() };
        assert_eq!(m[0].0, "a");
        let Value::Array(a) = &m[0].1 else { panic!() };
        assert_eq!(a[0], Value::Int(1));
        assert_eq!(a[1], Value::Float(2.5));
        assert!(matches!(a[2], Value::Float(f) if f.is_nan()));
        assert_eq!(a[3], Value::Float(f64::NEG_INFINITY));
        assert_eq!(m[2].1, Value::Str("x\"é😀".into()));
        assert_eq!(
            v.to_json(),
            r#"{"a":[1,2.5,NaN,-Infinity,Infinity],"b":{"c":null},"d":"x\"é😀","e":true}"#
        );
        // Integers beyond i64 become floats, like wandb-core.
        assert_eq!(
            Value::parse("1180591620717411303424").unwrap().to_json(),
            "1.1805916207174113e+21"
        );
        assert_eq!(Value::parse("-5").unwrap(), Value::Int(-5));
        assert_eq!(Value::parse("1.0").unwrap().to_json(), "1");
    }

    #[test]
    fn rejects_what_is_not_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "tru",
            "\"abc",
            "1 2",
            "{1:2}",
            "-",
            "\"\\x\"",
        ] {
            assert!(Value::parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(Value::parse(&deep).is_err());
    }

    /// `text` read leniently, keys sorted, written as Go's `encoding/json`
    /// (a value that does not read stays the string it is, as W&B's
    /// inspector shows it).
    fn lenient(text: &str) -> String {
        let mut v = Value::parse_lenient(text).unwrap_or_else(|_| Value::Str(text.into()));
        v.sort_keys();
        let mut out = String::new();
        v.write_with(&mut out, Format::GO_JSON);
        out
    }

    #[test]
    fn lenient_reading_is_w_and_b_inspectors() {
        for (text, want) in [
            ("1.", "1"),
            ("1.e5", "100000"),
            (".5", "\".5\""),
            ("-.5", "-0.5"),
            ("+1", "\"+1\""),
            ("-infinity", "\"-Infinity\""),
            ("-INF", "\"-Infinity\""),
            ("-Infinity", "\"-Infinity\""),
            ("infinity", "\"infinity\""),
            ("-NaN", "\"-NaN\""),
            ("nan", "\"nan\""),
            ("00", "0"),
            ("-01", "-1"),
            ("-0", "0"),
            ("-0.0", "-0"),
            ("9007199254740993", "9007199254740993"),
            ("9223372036854775808", "9223372036854776000"),
            ("1e400", "\"Infinity\""),
            ("1e-400", "0"),
            ("1.5e", "\"1.5e\""),
            ("[1,]", "\"[1,]\""),
            ("[-Infinityx]", "\"[-Infinityx]\""),
            ("\"\\ud83d\\ude00\"", "\"😀\""),
            ("\"\\ud800\"", "\"\u{fffd}\""),
            ("\"a\tb\"", "\"\\\"a\\tb\\\"\""),
            ("{\"b\":1,\"a\":NaN,\"b\":2}", "{\"a\":\"NaN\",\"b\":2}"),
            (" NaN ", "\"NaN\""),
            ("1 2", "\"1 2\""),
            ("0x10", "\"0x10\""),
            ("1_000", "\"1_000\""),
        ] {
            assert_eq!(lenient(text), want, "{text}");
        }
        // Strict reading refuses what lenient reading takes.
        for text in ["1.", "00", "-.5", "-inf"] {
            assert!(Value::parse(text).is_err(), "{text}");
        }
        assert_eq!(Value::parse("-0").unwrap(), Value::Float(-0.0));
        assert_eq!(Value::parse_lenient("-0").unwrap(), Value::Int(0));
        // Lenient values nest deeper.
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Value::parse(&nested(300)).is_err());
        assert!(Value::parse_lenient(&nested(300)).is_ok());
        assert!(Value::parse_lenient(&nested(600)).is_err());
    }

    #[test]
    fn a_lone_high_surrogate_leaves_the_next_escape_alone() {
        for parse in [Value::parse, Value::parse_lenient] {
            assert_eq!(
                parse(r#""\ud800\u0041""#).unwrap(),
                Value::Str("\u{fffd}A".into())
            );
            assert_eq!(
                parse(r#""\udc00x""#).unwrap(),
                Value::Str("\u{fffd}x".into())
            );
        }
    }

    #[test]
    fn sorting_keys_orders_objects_as_a_go_map() {
        let mut v = Value::parse(r#"[{"b":{"y":1,"x":2},"a":1,"b":{"z":3},"é":0,"B":0}]"#).unwrap();
        v.sort_keys();
        assert_eq!(v.to_json(), r#"[{"B":0,"a":1,"b":{"z":3},"é":0}]"#);
    }

    #[test]
    fn go_json_format() {
        let go = |f: f64| {
            let mut s = String::new();
            Value::Float(f).write_with(&mut s, Format::GO_JSON);
            s
        };
        for (x, want) in [
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (1e-6, "0.000001"),
            (1.2345678901234567e19, "12345678901234567000"),
            (1796642363.7453637, "1796642363.7453637"),
            (1e300, "1e+300"),
            (1e-300, "1e-300"),
            (-0.0, "-0"),
            (0.1, "0.1"),
            (-2.5e-8, "-2.5e-8"),
            (f64::NAN, "\"NaN\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
        ] {
            assert_eq!(go(x), want, "{x}");
        }
        let v = Value::parse("{\"a\":[1,{}],\"b\":[],\"c\":{\"d\":\"\\b\\f\u{2028}\\u0001\"}}")
            .unwrap();
        let mut out = String::new();
        v.write_with(&mut out, Format::GO_JSON);
        assert_eq!(
            out,
            "{\"a\":[1,{}],\"b\":[],\"c\":{\"d\":\"\\b\\f\\u2028\\u0001\"}}"
        );
        let mut out = String::new();
        v.write_with(&mut out, Format::GO_JSON_INDENTED);
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": [],\n  \"c\": {\n    \"d\": \"\\b\\f\\u2028\\u0001\"\n  }\n}"
        );
        // wandb-core's own: `\u0008`, U+2028 as is.
        assert_eq!(
            v.to_json(),
            "{\"a\":[1,{}],\"b\":[],\"c\":{\"d\":\"\\u0008\\u000c\u{2028}\\u0001\"}}"
        );
    }

    #[test]
    fn string_escapes() {
        let escaped = |escapes| {
            let mut s = String::new();
            write_str_with("<a>&\u{8}\u{c}\u{2028}\u{1b}\u{7f}é\"\\\n", escapes, &mut s);
            s
        };
        assert_eq!(
            escaped(Escapes::Wandb),
            "\"<a>&\\u0008\\u000c\u{2028}\\u001b\u{7f}é\\\"\\\\\\n\""
        );
        assert_eq!(
            escaped(Escapes::Short),
            "\"<a>&\\b\\f\u{2028}\\u001b\u{7f}é\\\"\\\\\\n\""
        );
        assert_eq!(
            escaped(Escapes::GoJson),
            "\"<a>&\\b\\f\\u2028\\u001b\u{7f}é\\\"\\\\\\n\""
        );
    }

    #[test]
    fn float32_has_its_own_shortest_digits() {
        for (x, want) in [
            (0.1f32, "0.1"),
            (1e-7, "1e-07"),
            (16777216.0, "1.6777216e+07"),
            (-2.5, "-2.5"),
            (f32::NAN, "NaN"),
            (f32::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0"),
        ] {
            let mut s = String::new();
            write_float32(x, &mut s);
            assert_eq!(s, want, "{x}");
        }
    }

    /// The layout from Rust's own shortest digits (`{:e}`), the slow way:
    /// the oracle for the ryu-based writer (up to how ties round).
    fn go_format_from_std(f: f64) -> String {
        let sci = format!("{:e}", f.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let sign = if f.is_sign_negative() { "-" } else { "" };
        if !(-4..6).contains(&exp) {
            let rest = if digits.len() > 1 {
                format!(".{}", &digits[1..])
            } else {
                String::new()
            };
            let e = if exp < 0 { '-' } else { '+' };
            format!("{sign}{}{rest}e{e}{:02}", &digits[..1], exp.unsigned_abs())
        } else if exp < 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
            }
        }
    }

    #[test]
    fn float_layout_at_the_edges() {
        for f in [
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e21,
            1e-5,
            9.999999999999999e5,
            1e16,
            123456789012345680.0,
            0.000123,
        ] {
            assert_eq!(fmt(f), go_format_from_std(f), "{f:e}");
            assert_eq!(fmt(-f), go_format_from_std(-f), "{:e}", -f);
        }
    }

    proptest::proptest! {
        #[test]
        fn float_layout_matches_the_std_digits(bits in proptest::num::u64::ANY) {
            let f = f64::from_bits(bits);
            if f.is_finite() && f != 0.0 {
                let (ours, std) = (fmt(f), go_format_from_std(f));
                if ours != std {
                    // A tie between two shortest digit strings: ryu (like
                    // Go and Python) rounds half to even, Rust's `{:e}` up.
                    // Same layout, both read back as `f`.
                    proptest::prop_assert_eq!(ours.len(), std.len());
                    proptest::prop_assert_eq!(ours.parse::<f64>().ok(), Some(f));
                    proptest::prop_assert_eq!(std.parse::<f64>().ok(), Some(f));
                }
            }
        }

        #[test]
        fn float_text_round_trips(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL) {
            let text = fmt(f);
            let back = Value::parse(&text).unwrap().as_f64().unwrap();
            proptest::prop_assert_eq!(back, f, "{}", text);
        }

        #[test]
        fn parsing_random_text_never_panics(s in ".{0,64}") {
            let _ = Value::parse(&s);
            let _ = Value::parse_lenient(&s);
        }
    }
}
