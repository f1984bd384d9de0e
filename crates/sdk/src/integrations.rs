//! Training loops of the Rust ML frameworks, tracked with this crate.
//!
//! There is no glue code to install: a run is opened before the loop,
//! `log()` goes where the loss is known, `finish()` after the loop. The
//! examples below show a [candle](https://github.com/huggingface/candle)
//! loop and a [burn](https://github.com/tracel-ai/burn) loop. They are
//! doctests compiled and run against small stand-ins for the frameworks'
//! types (hidden lines: the few methods the loops call), so this crate's
//! tests need neither framework; with the real crates, the same lines
//! compile without the stand-ins.
//!
//! `log()` takes the loss as a plain number: reading a scalar back from
//! the device (`to_scalar`, `into_scalar`) synchronises with it, so
//! training loops usually do it every few steps, as below.
//!
//! # candle
//!
//! ```
//! # mod candle_core {
//! #     #[derive(Debug)]
//! #     pub struct Error;
//! #     impl std::fmt::Display for Error {
//! #         fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("candle") }
//! #     }
//! #     impl std::error::Error for Error {}
//! #     pub type Result<T> = std::result::Result<T, Error>;
//! #     pub struct Tensor(pub f32);
//! #     impl Tensor {
//! #         pub fn to_scalar<T: From<f32>>(&self) -> Result<T> { Ok(T::from(self.0)) }
//! #     }
//! # }
//! # mod candle_nn {
//! #     use super::candle_core::{Result, Tensor};
//! #     pub trait Optimizer {
//! #         fn backward_step(&mut self, loss: &Tensor) -> Result<()>;
//! #         fn learning_rate(&self) -> f64;
//! #     }
//! #     pub struct AdamW;
//! #     impl Optimizer for AdamW {
//! #         fn backward_step(&mut self, _loss: &Tensor) -> Result<()> { Ok(()) }
//! #         fn learning_rate(&self) -> f64 { 1e-3 }
//! #     }
//! # }
//! # struct Mlp;
//! # impl Mlp {
//! #     fn loss(&self, batch: usize) -> candle_core::Result<candle_core::Tensor> {
//! #         Ok(candle_core::Tensor(1.0 / (batch + 1) as f32))
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (model, mut opt) = (Mlp, candle_nn::AdamW);
//! # let tmp = tempfile::tempdir()?;
//! use candle_nn::Optimizer;
//! use wandb::{Mode, Settings};
//!
//! let run = wandb::init(
//!     Settings::new()
//!         .project("candle-mnist")
//!         .mode(Mode::Offline)
//! #       .dir(tmp.path())
//!         .config(&serde_json::json!({"lr": opt.learning_rate(), "batch_size": 64}))?,
//! )?;
//! for step in 0..500 {
//!     let loss = model.loss(step)?;
//!     opt.backward_step(&loss)?;
//!     if step % 10 == 0 {
//!         run.log(wandb::row! {"train/loss" => loss.to_scalar::<f32>()?, "step" => step})?;
//!     }
//! }
//! run.finish(0)?;
//! # Ok(())
//! # }
//! ```
//!
//! # burn
//!
//! A custom loop (burn's `Learner` has its own metric loggers; this is the
//! loop you write when you want W&B's charts):
//!
//! ```
//! # mod burn {
//! #     pub mod tensor {
//! #         pub struct Tensor(pub f32);
//! #         impl Tensor {
//! #             pub fn backward(&self) -> Gradients { Gradients }
//! #             pub fn into_scalar(self) -> f32 { self.0 }
//! #         }
//! #         pub struct Gradients;
//! #     }
//! #     pub mod optim {
//! #         use super::tensor::Gradients;
//! #         pub struct GradientsParams;
//! #         impl GradientsParams {
//! #             pub fn from_grads<M>(_grads: Gradients, _model: &M) -> Self { GradientsParams }
//! #         }
//! #         pub trait Optimizer<M> {
//! #             fn step(&mut self, lr: f64, model: M, grads: GradientsParams) -> M;
//! #         }
//! #         pub struct Adam;
//! #         impl<M> Optimizer<M> for Adam {
//! #             fn step(&mut self, _lr: f64, model: M, _grads: GradientsParams) -> M { model }
//! #         }
//! #     }
//! # }
//! # struct Model;
//! # impl Model {
//! #     fn forward_loss(&self, epoch: usize, batch: usize) -> burn::tensor::Tensor {
//! #         burn::tensor::Tensor(1.0 / (epoch * 100 + batch + 1) as f32)
//! #     }
//! # }
//! # let (mut model, mut optim) = (Model, burn::optim::Adam);
//! # let tmp = tempfile::tempdir()?;
//! use burn::optim::{GradientsParams, Optimizer};
//! use wandb::{Metric, Mode, Settings};
//!
//! let lr = 1e-4;
//! let run = wandb::init(
//!     Settings::new()
//!         .project("burn-mnist")
//!         .mode(Mode::Offline)
//! #       .dir(tmp.path())
//!         .config(&serde_json::json!({"lr": lr, "epochs": 3}))?,
//! )?;
//! run.define_metric(Metric::new("train/*").step_metric("epoch"))?;
//! for epoch in 0..3 {
//!     for batch in 0..100 {
//!         let loss = model.forward_loss(epoch, batch);
//!         let grads = GradientsParams::from_grads(loss.backward(), &model);
//!         model = optim.step(lr, model, grads);
//!         if batch % 20 == 0 {
//!             run.log(wandb::row! {"train/loss" => loss.into_scalar(), "epoch" => epoch})?;
//!         }
//!     }
//! }
//! run.finish(0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
