//! Media values: histograms and images, in the JSON W&B's UI renders.
//!
//! An image is encoded as PNG when it is built (in the caller: CPU only)
//! and written into the run's `files/media/images/` by the run's sender
//! thread, so [`Run::log`](crate::Run::log) does no file I/O. Its value in
//! the history row is the same `image-file` description the Python SDK
//! writes.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Most bins W&B accepts in a histogram.
///
/// ```
/// assert!(wandb::Histogram::from_values([1.0], wandb::MAX_BINS + 1).is_err());
/// ```
pub const MAX_BINS: usize = 512;

/// A histogram: `counts[i]` values fell in `[edges[i], edges[i+1])` (the
/// last bin includes its upper edge), as `numpy.histogram` computes it.
///
/// ```
/// let h = wandb::Histogram::from_values([1.0, 2.0, 2.5, 4.0], 3)?;
/// assert_eq!(h.counts(), &[1, 2, 1]);
/// assert_eq!(h.edges(), &[1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    edges: Vec<f64>,
}

impl Histogram {
    /// Bins `values` into `bins` equal-width bins between their minimum and
    /// maximum (W&B's default is 64). Non-finite values are left out.
    ///
    /// ```
    /// let weights: Vec<f32> = vec![0.1, -0.2, 0.3];
    /// let h = wandb::Histogram::from_values(weights.iter().map(|w| *w as f64), 64)?;
    /// assert_eq!(h.counts().iter().sum::<u64>(), 3);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_values<I>(values: I, bins: usize) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<f64>,
    {
        use std::borrow::Borrow;
        check_bins(bins)?;
        let values: Vec<f64> = values
            .into_iter()
            .map(|v| *v.borrow())
            .filter(|v| v.is_finite())
            .collect();
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        if values.is_empty() {
            (lo, hi) = (0.0, 1.0);
        } else if lo == hi {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let width = (hi - lo) / bins as f64;
        let edges: Vec<f64> = (0..=bins)
            .map(|i| if i == bins { hi } else { lo + width * i as f64 })
            .collect();
        let mut counts = vec![0u64; bins];
        for v in values {
            let i = (((v - lo) / (hi - lo)) * bins as f64) as usize;
            counts[i.min(bins - 1)] += 1;
        }
        Ok(Self { counts, edges })
    }

    /// A histogram computed elsewhere: `edges` has one more entry than
    /// `counts` and increases.
    ///
    /// ```
    /// let h = wandb::Histogram::from_counts(vec![3, 1], vec![0.0, 0.5, 1.0])?;
    /// assert_eq!(h.counts(), &[3, 1]);
    /// assert!(wandb::Histogram::from_counts(vec![3], vec![0.0]).is_err());
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_counts(counts: Vec<u64>, edges: Vec<f64>) -> Result<Self> {
        check_bins(counts.len())?;
        let invalid = |reason: &str| Error::InvalidValue {
            key: "histogram".into(),
            reason: reason.into(),
        };
        if edges.len() != counts.len() + 1 {
            return Err(invalid("edges must have one more entry than counts"));
        }
        if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[1] < w[0]) {
            return Err(invalid("edges must be finite and increasing"));
        }
        Ok(Self { counts, edges })
    }

    /// How many values fell in each bin.
    ///
    /// ```
    /// let h = wandb::Histogram::from_values([0.0, 1.0], 2)?;
    /// assert_eq!(h.counts(), &[1, 1]);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The bin edges (one more than the counts).
    ///
    /// ```
    /// let h = wandb::Histogram::from_values([0.0, 1.0], 2)?;
    /// assert_eq!(h.edges(), &[0.0, 0.5, 1.0]);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(r#"{"_type":"histogram","values":["#);
        for (i, c) in self.counts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{c}");
        }
        out.push_str(r#"],"bins":["#);
        for (i, e) in self.edges.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::Value::Float(*e).write_json(out);
        }
        out.push_str("]}");
    }
}

fn check_bins(bins: usize) -> Result<()> {
    if bins == 0 || bins > MAX_BINS {
        return Err(Error::InvalidValue {
            key: "histogram".into(),
            reason: format!("{bins} bins (W&B takes 1 to {MAX_BINS})"),
        });
    }
    Ok(())
}

/// An image, stored as a PNG file in the run and shown in W&B's media
/// panels.
///
/// ```
/// // A 2×1 RGB image: one red and one blue pixel.
/// let img = wandb::Image::from_rgb8(2, 1, &[255, 0, 0, 0, 0, 255])?.with_caption("two pixels");
/// assert_eq!((img.width(), img.height()), (2, 1));
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    png: Arc<Vec<u8>>,
    sha256: String,
    width: u32,
    height: u32,
    caption: Option<String>,
    /// Where it is stored, relative to the run's files directory (set when
    /// the run logs it).
    pub(crate) path: Option<String>,
}

impl Image {
    /// From 8-bit RGB pixels, row by row (`3 * width * height` bytes).
    ///
    /// ```
    /// let img = wandb::Image::from_rgb8(1, 1, &[0, 128, 255])?;
    /// assert_eq!(img.width(), 1);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_rgb8(width: u32, height: u32, pixels: &[u8]) -> Result<Self> {
        Self::encode(width, height, pixels, png::ColorType::Rgb, 3)
    }

    /// From 8-bit RGBA pixels (`4 * width * height` bytes).
    ///
    /// ```
    /// let img = wandb::Image::from_rgba8(1, 1, &[0, 128, 255, 255])?;
    /// assert_eq!(img.height(), 1);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_rgba8(width: u32, height: u32, pixels: &[u8]) -> Result<Self> {
        Self::encode(width, height, pixels, png::ColorType::Rgba, 4)
    }

    /// From 8-bit grayscale pixels (`width * height` bytes).
    ///
    /// ```
    /// let img = wandb::Image::from_gray8(2, 2, &[0, 64, 128, 255])?;
    /// assert_eq!(img.width(), 2);
    /// assert!(wandb::Image::from_gray8(2, 2, &[0]).is_err());
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_gray8(width: u32, height: u32, pixels: &[u8]) -> Result<Self> {
        Self::encode(width, height, pixels, png::ColorType::Grayscale, 1)
    }

    /// From a PNG file (read now; its size comes from its header).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("x.png");
    /// wandb::Image::from_gray8(1, 1, &[7])?.save_png(&path)?;
    /// let img = wandb::Image::from_png_file(&path)?;
    /// assert_eq!((img.width(), img.height()), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_png_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let reader = decoder.read_info().map_err(|e| Error::InvalidValue {
            key: path.display().to_string(),
            reason: format!("not a PNG file: {e}"),
        })?;
        let (width, height) = (reader.info().width, reader.info().height);
        Ok(Self::from_png_bytes(bytes, width, height))
    }

    /// Adds a caption shown under the image.
    ///
    /// ```
    /// let img = wandb::Image::from_gray8(1, 1, &[0])?.with_caption("sample 0");
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn with_caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// Width in pixels.
    ///
    /// ```
    /// assert_eq!(wandb::Image::from_gray8(3, 1, &[0; 3])?.width(), 3);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    ///
    /// ```
    /// assert_eq!(wandb::Image::from_gray8(1, 3, &[0; 3])?.height(), 3);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Writes the PNG to a file of your choosing.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// wandb::Image::from_gray8(1, 1, &[0])?.save_png(dir.path().join("a.png"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.png.as_slice()).map_err(|e| Error::io(path, e))
    }

    pub(crate) fn png(&self) -> &Arc<Vec<u8>> {
        &self.png
    }

    /// The stored name, as the Python SDK forms it: `<key>_<step>_<hash>.png`.
    pub(crate) fn file_name(&self, key: &str, step: u64) -> String {
        format!("{}_{step}_{}.png", safe_file_part(key), &self.sha256[..20])
    }

    fn encode(
        width: u32,
        height: u32,
        pixels: &[u8],
        color: png::ColorType,
        channels: usize,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidValue {
            key: "image".into(),
            reason,
        };
        if width == 0 || height == 0 {
            return Err(invalid(format!("empty image ({width}×{height})")));
        }
        let want = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(channels))
            .ok_or_else(|| invalid("image too large".into()))?;
        if pixels.len() != want {
            return Err(invalid(format!(
                "{} bytes of pixels for {width}×{height}×{channels} (want {want})",
                pixels.len()
            )));
        }
        let mut png_bytes = Vec::with_capacity(want / 2 + 64);
        {
            let mut enc = png::Encoder::new(&mut png_bytes, width, height);
            enc.set_color(color);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| invalid(format!("PNG encoding: {e}")))?;
            w.write_image_data(pixels)
                .map_err(|e| invalid(format!("PNG encoding: {e}")))?;
        }
        Ok(Self::from_png_bytes(png_bytes, width, height))
    }

    fn from_png_bytes(png: Vec<u8>, width: u32, height: u32) -> Self {
        let sha256 = Sha256::digest(&png)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            png: Arc::new(png),
            sha256,
            width,
            height,
            caption: None,
            path: None,
        }
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        use wandb_proto::json::write_str;
        out.push_str(r#"{"_type":"image-file","sha256":"#);
        write_str(&self.sha256, out);
        let _ = write!(out, r#","size":{},"path":"#, self.png.len());
        write_str(self.path.as_deref().unwrap_or(""), out);
        let _ = write!(
            out,
            r#","format":"png","width":{},"height":{}"#,
            self.width, self.height
        );
        if let Some(c) = &self.caption {
            out.push_str(r#","caption":"#);
            write_str(c, out);
        }
        out.push('}');
    }
}

/// A key as part of a file name: anything but `[A-Za-z0-9._-]` becomes `_`,
/// so no key can name a path outside the media directory.
pub(crate) fn safe_file_part(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.replace("..", "__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_matches_numpy_edges_and_counts() {
        // numpy.histogram([1, 2, 2, 3, 10], bins=3)
        let h = Histogram::from_values([1.0, 2.0, 2.0, 3.0, 10.0], 3).unwrap();
        assert_eq!(h.counts(), &[4, 0, 1]);
        assert_eq!(h.edges(), &[1.0, 4.0, 7.0, 10.0]);
        // One distinct value: numpy widens the range by 0.5 each side.
        let h = Histogram::from_values([5.0, 5.0], 1).unwrap();
        assert_eq!(h.edges(), &[4.5, 5.5]);
        assert_eq!(h.counts(), &[2]);
        let mut json = String::new();
        h.write_json(&mut json);
        assert_eq!(
            json,
            r#"{"_type":"histogram","values":[2],"bins":[4.5,5.5]}"#
        );
        assert!(Histogram::from_values([1.0], 0).is_err());
        assert!(Histogram::from_values([1.0], 513).is_err());
        let h = Histogram::from_values([f64::NAN, 1.0, f64::INFINITY], 2).unwrap();
        assert_eq!(h.counts().iter().sum::<u64>(), 1);
    }

    #[test]
    fn image_png_round_trips_and_names_are_safe() {
        let img = Image::from_rgb8(2, 2, &[10; 12]).unwrap();
        let decoded = png::Decoder::new(std::io::Cursor::new(img.png().as_slice()))
            .read_info()
            .unwrap();
        assert_eq!(decoded.info().width, 2);
        assert_eq!(img.sha256.len(), 64);
        let name = img.file_name("../../etc/x y", 3);
        assert!(name.starts_with("______etc_x_y_3_"), "{name}");
        assert!(!name.contains('/'));
        assert!(Image::from_rgb8(2, 2, &[0; 11]).is_err());
        assert!(Image::from_rgb8(0, 2, &[]).is_err());
    }
}
