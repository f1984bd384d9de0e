//! A synthetic training loop, tracked with W&B.
//!
//!     cargo run --example train
//!
//! Offline unless WANDB_API_KEY (or WANDB_MODE=online) says otherwise: the
//! run is written under ./wandb/ and can be uploaded later with
//! `wandb sync`. Set WANDB_DIR to write it elsewhere.

use wandb::{Histogram, Image, Metric, Settings, Summary};

#[derive(serde::Serialize)]
struct Config {
    learning_rate: f64,
    epochs: u32,
    steps_per_epoch: u32,
    model: Model,
}

#[derive(serde::Serialize)]
struct Model {
    layers: u32,
    hidden: u32,
    activation: &'static str,
}

fn main() -> Result<(), wandb::Error> {
    let config = Config {
        learning_rate: 3e-4,
        epochs: 5,
        steps_per_epoch: 100,
        model: Model {
            layers: 4,
            hidden: 256,
            activation: "gelu",
        },
    };
    let run = wandb::init(
        Settings::new()
            .project("wandb-rs-examples")
            .job_type("train")
            .config(&config)?,
    )?;
    run.define_metric(Metric::new("epoch").hidden(true))?;
    run.define_metric(Metric::new("val/*").step_metric("epoch"))?;
    run.define_metric(Metric::new("train/loss").summary([Summary::Min, Summary::Last]))?;

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        // xorshift: deterministic noise without a dependency.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut weights: Vec<f64> = (0..1000).map(|_| noise()).collect();
    for epoch in 0..config.epochs {
        for step in 0..config.steps_per_epoch {
            let t = f64::from(epoch * config.steps_per_epoch + step);
            let loss = 2.0 * (-t / 150.0).exp() + 0.05 * noise().abs();
            let acc = 1.0 - 0.9 * (-t / 120.0).exp() + 0.02 * noise();
            run.log(wandb::row! {
                "train/loss" => loss,
                "train/acc" => acc,
                "epoch" => epoch,
            })?;
        }
        for w in &mut weights {
            *w = *w * 0.9 + 0.05 * noise();
        }
        // A validation row per epoch, a weight histogram and a small image
        // of the weights.
        let pixels: Vec<u8> = weights[..256]
            .iter()
            .map(|w| ((w + 0.5).clamp(0.0, 1.0) * 255.0) as u8)
            .collect();
        run.log(wandb::row! {
            "val/loss" => 2.0 * (-f64::from(epoch + 1) / 1.5).exp(),
            "val/acc" => 1.0 - 0.9 * (-f64::from(epoch + 1)).exp(),
            "epoch" => epoch,
            "weights" => Histogram::from_values(&weights, 64)?,
            "weights_image" => Image::from_gray8(16, 16, &pixels)?.with_caption(format!("epoch {epoch}")),
        })?;
    }
    run.summary_set(
        "final_val_acc",
        1.0 - 0.9 * (-f64::from(config.epochs)).exp(),
    )?;
    let report = run.finish(0)?;
    if let Some(dir) = &report.dir {
        println!("run {} written to {}", run.id(), dir.display());
        println!("upload it with: wandb sync {}", dir.display());
    }
    Ok(())
}
