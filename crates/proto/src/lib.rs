//! The wire vocabulary shared by the service and the SDK.
//!
//! * [`pb`]: prost types for the `wandb_internal` protobuf package, wire
//!   compatible with the wandb 0.31.0 Python SDK (see `schema/`).
//! * [`frame`]: the `W` + u32 LE length framing used on the service socket.
//! * [`wire`]: byte-level helpers on encoded `Record`s, so hot paths can route
//!   and number records without decoding (and re-encoding) them.
//! * [`json`]: the JSON dialect of `value_json` (NaN/Infinity literals,
//!   wandb-core's number formatting).
//! * [`token`]: `WANDB_SERVICE` tokens and port files (how clients find a
//!   service).
//! * [`tree`]: nested JSON objects set leaf by leaf (summary, config).
//! * [`time`]: protobuf timestamps.
//! * [`view`]: zero-copy views of the hottest message (`partial_history`).
//! * [`descriptor_pool`]: run-time reflection over the same schema, for
//!   rendering records as JSON.

pub mod frame;
pub mod json;
pub mod time;
pub mod token;
pub mod tree;
pub mod view;
pub mod wire;

/// Generated prost types for the `wandb_internal` package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/wandb_internal.rs"));
}

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The encoded `FileDescriptorSet` of our schema (with its imports).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

/// The protobuf package every wandb message lives in.
pub const PACKAGE: &str = "wandb_internal";

/// A reflection pool over `TelemetryRecord` and what it uses only (much
/// smaller than [`descriptor_pool`]).
pub fn telemetry_descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(
            &include_bytes!(concat!(env!("OUT_DIR"), "/telemetry_descriptor_set.bin"))[..],
        )
        .expect("the telemetry schema compiled by build.rs decodes")
    })
}

/// A reflection pool over our schema, built once on first use.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the schema compiled by build.rs decodes")
    })
}
