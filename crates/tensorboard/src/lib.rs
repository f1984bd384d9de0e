//! Reading TensorBoard logs into W&B runs.
//!
//! With `wandb.init(sync_tensorboard=True)` the SDK does not convert
//! TensorBoard data itself: it tells the service where each summary writer
//! logs (a `tbrecord`), and the service follows the tfevents files there and
//! logs what they hold as ordinary history. `wandb-core sync --tensorboard`
//! does the same for log directories written without W&B. Both need the
//! same pieces, collected here so that they agree with each other and with
//! W&B's own service (whose key names and value types the W&B UI expects):
//!
//! - [`record`]: the TFRecord framing of tfevents files (length, masked
//!   CRC-32C, data), read while the writer may still be appending;
//! - [`logdir`]: which files of a log directory are read, in what order;
//! - [`cloud`]: log directories in S3 or GCS buckets;
//! - [`namespace`]: the key prefix and save path of each log directory;
//! - [`proto`]: the few event fields W&B reads;
//! - [`convert`]: events to history rows: scalars, histograms, images and
//!   PR curves as W&B values, media files written under the run's files dir.

pub mod cloud;
pub mod convert;
mod histogram;
pub mod logdir;
pub mod namespace;
pub mod proto;
pub mod record;
mod tensor;
