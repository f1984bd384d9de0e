//! `wandb-standin`: a W&B backend on loopback, for trying online mode with
//! no W&B account (and for the project's tests).
//!
//!     wandb-standin --port 8080 --api-key $(printf 'x%.0s' {1..40})
//!     WANDB_BASE_URL=http://127.0.0.1:8080 WANDB_API_KEY=xxxx… python train.py

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wandb_standin::{Config, Inject, StandIn, Store};

#[derive(Parser)]
#[command(about = "A W&B backend stand-in on loopback")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require this API key.
    #[arg(long)]
    api_key: Option<String>,
    /// Keep what is received in this SQLite file (default: in memory).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Serve failures: target:status[:times[:retry_after]], e.g.
    /// UpsertBucket:500:1 or file_stream:429:1:1 (repeatable).
    #[arg(long)]
    inject: Vec<Inject>,
    /// Server features reported as enabled: `all` (as the W&B cloud),
    /// `none`, or a comma-separated list (e.g. FILESTREAM_GZIP).
    #[arg(long, default_value = "all")]
    features: String,
    /// Answer every request this many milliseconds after it arrived (a slow
    /// backend).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Serve HTTPS with a certificate for this name (repeatable), signed
    /// by a CA made at start and written to --ca-file.
    #[arg(long = "tls")]
    tls_names: Vec<String>,
    /// Where to write the CA's certificate (PEM) for clients to trust.
    #[arg(long, default_value = "standin-ca.pem")]
    ca_file: PathBuf,
    /// The base URL clients reach it by, if not its own address (behind
    /// a proxy or a name): upload URLs use it.
    #[arg(long)]
    public_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config {
        api_key: args.api_key,
        inject: args.inject,
        latency: std::time::Duration::from_millis(args.latency_ms),
        features: wandb_standin::features(&args.features),
        tls: (!args.tls_names.is_empty()).then_some(args.tls_names),
        public_url: args.public_url,
        ..Default::default()
    };
    let store = Store::open(args.db.as_deref()).context("open the store")?;
    let standin = StandIn::spawn(config, args.port, store).context("listen")?;
    println!("W&B stand-in listening on {}", standin.addr);
    if let Some(ca) = &standin.ca_pem {
        std::fs::write(&args.ca_file, ca)
            .with_context(|| format!("write {}", args.ca_file.display()))?;
        println!(
            "  HTTPS; trust its CA with SSL_CERT_FILE={}",
            args.ca_file.display()
        );
    }
    println!(
        "  WANDB_BASE_URL={} WANDB_API_KEY=<40 characters> python your_script.py",
        standin.base_url
    );
    loop {
        std::thread::park();
    }
}
