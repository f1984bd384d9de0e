//! A fresh stand-in per measured run (loopback, in this process, in
//! memory), so no run sees another's data and none pays for another's.

use std::time::Duration;

use wandb_standin::{Config, StandIn, Store};

/// A stand-in that accepts `key` and answers after `latency`.
pub fn fresh(key: &str, latency: Duration) -> anyhow::Result<StandIn> {
    Ok(StandIn::spawn(
        Config {
            api_key: Some(key.into()),
            latency,
            ..Default::default()
        },
        0,
        Store::open(None)?,
    )?)
}
