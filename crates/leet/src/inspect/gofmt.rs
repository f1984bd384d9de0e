//! Numbers, strings, times and durations written the way W&B's Go binary
//! writes them, so that our `leet inspect` output is byte-for-byte what
//! scripts reading W&B's already expect.
//!
//! Several Go formats are in play at once: `%v` and the text format's
//! floats (shortest digits, exponent form outside 1e-4..1e6, each with its
//! own `NaN` and infinities), the text-format string escapes, RFC 3339
//! times with trimmed fractions, and `time.Duration`'s `1h2m3s`. JSON,
//! floats and strings included, is `wandb_proto::json`'s
//! ([`json::Format::GO_JSON`]), as are the shortest digits of a float.

use std::fmt::Write as _;

use wandb_proto::json;

/// Special values as a Go format spells them.
#[derive(Clone, Copy)]
pub struct Specials {
    pub nan: &'static str,
    pub inf: &'static str,
    pub neg_inf: &'static str,
}

/// `fmt`'s `%v`: `NaN`, `+Inf`, `-Inf`.
pub const PRINT: Specials = Specials {
    nan: "NaN",
    inf: "+Inf",
    neg_inf: "-Inf",
};
/// The protobuf text format: `nan`, `inf`, `-inf`.
pub const TEXT: Specials = Specials {
    nan: "nan",
    inf: "inf",
    neg_inf: "-inf",
};

fn special(x: f64, s: Specials) -> Option<&'static str> {
    if x.is_nan() {
        Some(s.nan)
    } else if x.is_infinite() {
        Some(if x > 0.0 { s.inf } else { s.neg_inf })
    } else {
        None
    }
}

/// A float64 in Go's shortest `%g` form (`1e+06`, `0.0001`, `1e-05`).
pub fn write_g(out: &mut String, x: f64, s: Specials) {
    match special(x, s) {
        Some(name) => out.push_str(name),
        None => json::write_float(x, out),
    }
}

/// A float32 in Go's shortest `%g` form (its own shortest digits).
pub fn write_g32(out: &mut String, x: f32, s: Specials) {
    match special(f64::from(x), s) {
        Some(name) => out.push_str(name),
        None => json::write_float32(x, out),
    }
}

/// A float32 as the float64 its shortest digits spell (`0.1f32` is
/// `0.1`), which is what a Go JSON round trip makes of it.
pub fn f32_as_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    let mut digits = String::new();
    json::write_float32(x, &mut digits);
    digits.parse().unwrap_or(f64::from(x))
}

/// A protobuf text-format string: `\n`, `\r`, `\t`, `\"`, `\\`, other
/// control bytes as `\xNN`, C1 controls as `\uNNNN`, bytes that are not
/// UTF-8 as `\xNN`; everything else as is.
pub fn write_text_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if ('\u{80}'..='\u{9f}').contains(&c) => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
}

/// A point in time: seconds and nanoseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    /// Go's zero `time.Time`: January 1 of year 1, UTC.
    pub const ZERO: Time = Time {
        secs: -62_135_596_800,
        nanos: 0,
    };

    /// A protobuf timestamp (normalised if its nanoseconds are out of range).
    pub fn from_proto(t: &prost_types::Timestamp) -> Time {
        let extra = i64::from(t.nanos).div_euclid(1_000_000_000);
        let nanos = i64::from(t.nanos).rem_euclid(1_000_000_000);
        Time {
            secs: t.seconds.saturating_add(extra),
            nanos: nanos as u32,
        }
    }

    pub fn from_system(t: std::time::SystemTime) -> Time {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Time {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Time { secs, nanos }
            }
        }
    }

    /// Nanoseconds from `earlier` to `self` (saturating).
    pub fn nanos_since(self, earlier: Time) -> i128 {
        (i128::from(self.secs) - i128::from(earlier.secs)) * 1_000_000_000 + i128::from(self.nanos)
            - i128::from(earlier.nanos)
    }
}

/// The civil date of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_date_time(out: &mut String, secs: i64) {
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

/// Fractional seconds, how protobuf's JSON mapping writes them: none, or
/// 3, 6 or 9 digits.
fn write_proto_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
    } else if nanos.is_multiple_of(1_000_000) {
        let _ = write!(out, ".{:03}", nanos / 1_000_000);
    } else if nanos.is_multiple_of(1_000) {
        let _ = write!(out, ".{:06}", nanos / 1_000);
    } else {
        let _ = write!(out, ".{nanos:09}");
    }
}

/// Fractional seconds, how Go's `RFC3339Nano` writes them: trailing zeros
/// dropped.
fn write_nano_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let text = format!("{nanos:09}");
    out.push('.');
    out.push_str(text.trim_end_matches('0'));
}

/// A timestamp as protobuf's JSON mapping writes it (UTC).
pub fn proto_json_time(t: Time) -> String {
    let mut out = String::new();
    write_date_time(&mut out, t.secs);
    write_proto_fraction(&mut out, t.nanos);
    out.push('Z');
    out
}

/// Go's `time.RFC3339Nano` in UTC.
pub fn rfc3339_nano_utc(t: Time) -> String {
    let mut out = String::new();
    write_date_time(&mut out, t.secs);
    write_nano_fraction(&mut out, t.nanos);
    out.push('Z');
    out
}

/// The local time zone's offset from UTC at `secs`, in seconds (the C
/// library's view: `TZ`, else `/etc/localtime`, as Go reads them).
fn local_offset(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we pass, and reads `t`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// Go's `time.RFC3339` in local time (whole seconds; `Z` at offset zero).
pub fn rfc3339_local(t: Time) -> String {
    let offset = local_offset(t.secs);
    let mut out = String::new();
    write_date_time(&mut out, t.secs + offset);
    if offset == 0 {
        out.push('Z');
    } else {
        let abs = offset.abs();
        let _ = write!(
            out,
            "{}{:02}:{:02}",
            if offset < 0 { '-' } else { '+' },
            abs / 3600,
            abs / 60 % 60
        );
    }
    out
}

/// `15:04:05` in local time.
pub fn clock_local(t: Time) -> String {
    let s = (t.secs + local_offset(t.secs)).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Go's `Duration.Round(time.Second).String()`: `0s`, `59s`, `1m1s`,
/// `25h0m0s`, `-1m0s`.
pub fn duration_secs(nanos: i128) -> String {
    // Round half away from zero, as Go does.
    let secs = (nanos.abs() + 500_000_000) / 1_000_000_000;
    let sign = if nanos < 0 && secs > 0 { "-" } else { "" };
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// Go's `filepath.Clean`, on the text of a path: the name W&B prints for
/// a path it joined.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(x: f64) -> String {
        let mut s = String::new();
        write_g(&mut s, x, PRINT);
        s
    }

    #[test]
    fn floats_as_go_prints_them() {
        for (x, want) in [
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (123456789.0, "1.23456789e+08"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1796642363.7465067, "1.7966423637465067e+09"),
            (-2.5e-10, "-2.5e-10"),
            (1e300, "1e+300"),
            (-0.0, "-0"),
            (2.0, "2"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(g(x), want, "{x}");
        }
        let mut s = String::new();
        write_g32(&mut s, 0.1, TEXT);
        assert_eq!(s, "0.1");
    }

    #[test]
    fn f32_reads_back_as_its_digits() {
        assert_eq!(f32_as_f64(0.1), 0.1);
    }

    #[test]
    fn text_format_strings() {
        let mut s = String::new();
        write_text_bytes(&mut s, "n\u{1}\u{7f}\u{85}é\t\"\\".as_bytes());
        assert_eq!(s, r#""n\x01\x7f\u0085é\t\"\\""#);
        let mut s = String::new();
        write_text_bytes(&mut s, b"a\x00\xffb");
        assert_eq!(s, r#""a\x00\xffb""#);
    }

    #[test]
    fn times_and_durations() {
        let t = Time {
            secs: 1_700_000_000,
            nanos: 120_000_000,
        };
        assert_eq!(proto_json_time(t), "2023-11-14T22:13:20.120Z");
        assert_eq!(rfc3339_nano_utc(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339_nano_utc(Time::ZERO), "0001-01-01T00:00:00Z");
        assert_eq!(duration_secs(2_700_000_000), "3s");
        assert_eq!(duration_secs(61_000_000_000), "1m1s");
        assert_eq!(duration_secs(3_660_000_000_000), "1h1m0s");
        assert_eq!(duration_secs(-60_000_000_000), "-1m0s");
        assert_eq!(duration_secs(0), "0s");
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("./basic//wandb/"), "basic/wandb");
        assert_eq!(clean_path("a/b/../c"), "a/c");
        assert_eq!(clean_path("/x/../../y"), "/y");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path(""), ".");
    }
}
