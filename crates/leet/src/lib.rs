//! LEET on our binary: `wandb leet` without W&B's service.
//!
//! The wandb CLI starts LEET as `wandb-core leet run|inspect|symon|config`
//! (wandb/cli/leet.py), so a drop-in service must answer those too. The
//! pieces, from disk to screen:
//!
//! * [`workspace`]: the runs of a wandb directory, newest first.
//! * [`runlog`]: one run's log read into what the views show, bounded in
//!   memory however long the run, and followed while it is written.
//! * [`inspect`]: `leet inspect`: records as text or JSON, or a summary.
//! * [`tui`]: the terminal UI (ratatui): the runs, one or several runs'
//!   charts, overview, system metrics and console.
//! * [`symon`]: this machine's system metrics, live.
//! * [`config`]: the settings file W&B's LEET shares, and `leet config`.
//! * [`synthetic`]: run logs written from scratch (tests, benchmarks).

pub mod config;
pub mod inspect;
pub mod runlog;
pub mod symon;
pub mod synthetic;
pub mod tui;
pub mod workspace;
