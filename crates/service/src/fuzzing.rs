//! Entry points for the fuzz targets (`crates/fuzzing`) into code that is
//! otherwise private to this crate. Compiled only with the `fuzzing`
//! feature; nothing else may use it.

use bytes::Bytes;
use wandb_proto::pb;

/// Parses a `ServerRequest` envelope as a connection does: `Ok(Some)` with
/// the request id and the record's bytes for a record, `Ok(None)` for any
/// other request, `Err` for what closes the connection.
pub fn envelope(payload: Bytes) -> Result<Option<(String, Bytes)>, String> {
    crate::server::fuzz_envelope(payload)
}

/// Reads settings as `inform_init` does.
pub fn settings(raw: pb::Settings) -> Result<(), String> {
    crate::settings::RunSettings::from_proto(raw, "fuzz")
        .map(drop)
        .map_err(|e| e.to_string())
}
