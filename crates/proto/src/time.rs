//! Protobuf timestamps as the records carry them.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Now, as a record's timestamp.
pub fn now() -> Timestamp {
    from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    )
}

/// Seconds since the epoch, as a timestamp.
pub fn from_secs(secs: f64) -> Timestamp {
    Timestamp {
        seconds: secs.trunc() as i64,
        nanos: (secs.fract() * 1e9) as i32,
    }
}

/// A timestamp in seconds since the epoch.
pub fn secs(t: &Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip() {
        let t = from_secs(1_700_000_000.25);
        assert_eq!(t.seconds, 1_700_000_000);
        assert_eq!(t.nanos, 250_000_000);
        assert_eq!(secs(&t), 1_700_000_000.25);
        assert!(secs(&now()) > 1_700_000_000.0);
    }
}
