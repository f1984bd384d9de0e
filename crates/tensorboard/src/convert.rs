//! Turns TensorBoard events into W&B history values the way wandb-core does,
//! so a run synced from tfevents looks the same whichever service synced it:
//! consecutive events of one step make one row, keys get the log dir's
//! namespace, and each TensorBoard plugin maps to a W&B type (numbers,
//! `histogram`, `images/separated`, and a `table-file` plus a chart for PR
//! curves). Media files are written under the run's files dir as they are
//! met; the caller turns each finished [`Row`] into history, file and config
//! records.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wandb_proto::json::{self, Value};

use crate::histogram::{Histogram, HistogramError};
use crate::proto::{Event, Kind, SummaryValue, TensorProto};
use crate::tensor::{Tensor, TensorError};

/// One W&B history row made from consecutive events of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The TensorBoard step (becomes `global_step`).
    pub step: i64,
    /// The last merged event's wall time (becomes `_timestamp`).
    pub wall_time: f64,
    /// (key, value_json) in the order converted; key is the namespaced tag as ONE label.
    pub items: Vec<(String, String)>,
    /// Run-relative paths (`media/images/<id>.png`, `media/table/<id>.table.json`) of files
    /// written for this row.
    pub media: Vec<String>,
    /// (key, chart value_json) for the run config at `_wandb.visualize.<key>` (PR curves).
    pub charts: Vec<(String, String)>,
}

impl Row {
    fn new(step: i64, wall_time: f64) -> Self {
        Self {
            step,
            wall_time,
            items: Vec::new(),
            media: Vec::new(),
            charts: Vec::new(),
        }
    }
}

/// Why one summary value was skipped.
#[derive(Debug, thiserror::Error)]
enum ValueError {
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    #[error("unexpected {0} value type")]
    UnexpectedType(String),
    #[error("expected images tensor string_val to have at least 3 values, but it has {0}")]
    TooFewImageStrings(usize),
    #[error("couldn't parse image dimensions")]
    ImageDimensions,
    #[error("couldn't emit image: images have different formats")]
    MixedFormats,
    #[error("couldn't write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Converts the events of one log dir (one stream), in file order.
#[derive(Debug)]
pub struct Converter {
    namespace: String,
    files_dir: PathBuf,
    /// The plugin each key last declared: TensorBoard writes a tag's
    /// metadata only with its first value.
    plugins: HashMap<String, String>,
    pending: Option<Row>,
    warnings: Vec<String>,
}

impl Converter {
    /// `namespace` prefixes every key (`"<namespace>/<tag>"`; empty for none);
    /// media files go under `files_dir` (the run's files dir).
    pub fn new(namespace: impl Into<String>, files_dir: impl Into<PathBuf>) -> Self {
        Self {
            namespace: namespace.into(),
            files_dir: files_dir.into(),
            plugins: HashMap::new(),
            pending: None,
            warnings: Vec::new(),
        }
    }

    /// Converts one event; returns the finished previous row when this event's step differs from
    /// the pending row's.
    pub fn event(&mut self, event: crate::proto::Event) -> Option<Row> {
        let Event {
            wall_time,
            step,
            summary,
        } = event;
        // Events without values count too: they move the step and time on.
        let (mut row, finished) = match self.pending.take() {
            Some(row) if row.step == step => (row, None),
            previous => (Row::new(step, wall_time), previous.filter(has_items)),
        };
        row.wall_time = wall_time;
        for value in summary.map(|s| s.value).unwrap_or_default() {
            self.value(value, &mut row);
        }
        self.pending = Some(row);
        finished
    }

    /// The pending row (at the end of the stream), if it has any items.
    pub fn finish(&mut self) -> Option<Row> {
        self.pending.take().filter(has_items)
    }

    /// Problems met since the last call (a value skipped and why), for the run's log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn value(&mut self, value: SummaryValue, row: &mut Row) {
        let SummaryValue {
            tag,
            metadata,
            kind,
        } = value;
        if tag.is_empty() {
            let step = row.step;
            self.warnings.push(format!(
                "skipping a TensorBoard value at step {step}: invalid tag: empty key"
            ));
            return;
        }
        let key = if self.namespace.is_empty() {
            tag
        } else {
            format!("{}/{tag}", self.namespace)
        };
        let declared = metadata
            .and_then(|m| m.plugin_data)
            .map(|p| p.plugin_name)
            .filter(|name| !name.is_empty());
        let plugin = match declared {
            Some(name) => {
                self.plugins.insert(key.clone(), name.clone());
                name
            }
            None => self.plugins.get(&key).cloned().unwrap_or_default(),
        };
        if let Err(err) = self.dispatch(&key, &plugin, kind, row) {
            self.warn(&key, err);
        }
    }

    /// wandb-core's table of plugin and value kind; combinations it does
    /// not convert are ignored without a warning.
    fn dispatch(
        &mut self,
        key: &str,
        plugin: &str,
        kind: Option<Kind>,
        row: &mut Row,
    ) -> Result<(), ValueError> {
        match (plugin, kind) {
            ("" | "scalars", Some(Kind::SimpleValue(v))) => {
                row.items.push((key.to_owned(), f32_json(v)));
            }
            ("scalars", Some(Kind::Tensor(t))) => {
                let value = Tensor::from_proto(&t)?.scalar()?;
                row.items.push((key.to_owned(), f64_json(value)));
            }
            ("" | "histograms", Some(Kind::Histo(h))) => {
                row.items
                    .push((key.to_owned(), Histogram::from_proto(&h)?.to_json()?));
            }
            ("histograms", Some(Kind::Tensor(t))) => {
                if let Some(h) = Histogram::from_tensor(&Tensor::from_proto(&t)?)? {
                    row.items.push((key.to_owned(), h.to_json()?));
                }
            }
            ("" | "images", Some(Kind::Image(image))) => {
                let (width, height) = (i64::from(image.width), i64::from(image.height));
                self.images(key, width, height, vec![image.encoded_image_string], row)?;
            }
            ("images", Some(Kind::Tensor(t))) => {
                let (width, height, encoded) = image_batch(t)?;
                self.images(key, width, height, encoded, row)?;
            }
            ("pr_curves", Some(Kind::Tensor(t))) => self.pr_curve(key, &t, row)?,
            ("scalars" | "histograms" | "images" | "pr_curves", _) => {
                return Err(ValueError::UnexpectedType(plugin.to_owned()));
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes the images that are png, jpeg or gif of the size TensorBoard
    /// recorded (the others are skipped with a warning) as one
    /// `images/separated` value.
    fn images(
        &mut self,
        key: &str,
        width: i64,
        height: i64,
        encoded: Vec<Vec<u8>>,
        row: &mut Row,
    ) -> Result<(), ValueError> {
        let mut kept = Vec::with_capacity(encoded.len());
        for bytes in encoded {
            match probe_image(&bytes) {
                Ok((format, w, h)) => {
                    let seen = (i64::try_from(w).ok(), i64::try_from(h).ok());
                    if seen == (Some(width), Some(height)) {
                        kept.push((format, bytes));
                    } else {
                        let reason =
                            format!("expected dimensions ({width}, {height}), but saw ({w}, {h})");
                        self.warn_image(key, reason);
                    }
                }
                Err(reason) => self.warn_image(key, reason),
            }
        }
        let Some(&(format, _)) = kept.first() else {
            return Ok(());
        };
        // Every kept image has TensorBoard's size, so only the formats can differ.
        if kept.iter().any(|&(f, _)| f != format) {
            return Err(ValueError::MixedFormats);
        }

        let mut filenames = Vec::with_capacity(kept.len());
        for (_, bytes) in &kept {
            match self.write_media("images", format, bytes) {
                Ok(path) => filenames.push(path),
                Err(err) => {
                    // The value fails as a whole: don't leave its other images behind.
                    for path in &filenames {
                        let _ = fs::remove_file(self.media_path(path));
                    }
                    return Err(err);
                }
            }
        }
        let value = object([
            ("_type", text("images/separated")),
            ("count", Value::Int(filenames.len() as i64)),
            (
                "filenames",
                Value::Array(filenames.iter().cloned().map(Value::Str).collect()),
            ),
            ("format", text(format)),
            ("height", Value::Int(height)),
            ("width", Value::Int(width)),
        ]);
        row.items.push((key.to_owned(), value.to_json()));
        row.media.extend(filenames);
        Ok(())
    }

    /// A `[6, T]` PR-curve tensor (TP, FP, TN, FN, precision, recall) becomes
    /// a recall/precision table file, logged as a `table-file`, and a line
    /// chart of it in the run config.
    fn pr_curve(&self, key: &str, tensor: &TensorProto, row: &mut Row) -> Result<(), ValueError> {
        let tensor = Tensor::from_proto(tensor)?;
        let precision = tensor.row(-2)?;
        let recall = tensor.row(-1)?;
        let data = recall
            .iter()
            .zip(precision)
            .map(|(&r, &p)| Value::Array(vec![Value::Float(r), Value::Float(p)]))
            .collect::<Vec<_>>();
        let nrows = data.len() as i64;
        let table = object([
            (
                "columns",
                Value::Array(vec![text("recall"), text("precision")]),
            ),
            ("data", Value::Array(data)),
        ])
        .to_json();

        // wandb-core adds the chart even when the table could not be written.
        row.charts.push((key.to_owned(), pr_chart(key)));

        let path = self.write_media("table", "table.json", table.as_bytes())?;
        let value = object([
            ("_type", text("table-file")),
            ("ncols", Value::Int(2)),
            ("nrows", Value::Int(nrows)),
            ("path", text(&path)),
            // Hex on purpose: wandb-core puts the raw digest bytes here, which
            // JSON mangles; hex is what the Python SDK's table files carry.
            ("sha256", Value::Str(sha256_hex(table.as_bytes()))),
            ("size", Value::Int(table.len() as i64)),
        ]);
        row.items.push((key.to_owned(), value.to_json()));
        row.media.push(path);
        Ok(())
    }

    /// Writes a new file `media/<kind>/<random id>.<ext>` under the files dir
    /// and returns that run-relative path. The file must not exist yet.
    fn write_media(&self, kind: &str, ext: &str, bytes: &[u8]) -> Result<String, ValueError> {
        let rel = format!("media/{kind}/{}.{ext}", media_id());
        let path = self.media_path(&rel);
        let io = |source| ValueError::Io {
            path: rel.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        if let Err(err) = file.write_all(bytes) {
            let _ = fs::remove_file(&path);
            return Err(io(err));
        }
        Ok(rel)
    }

    fn media_path(&self, rel: &str) -> PathBuf {
        rel.split('/')
            .fold(self.files_dir.clone(), |path, part| path.join(part))
    }

    fn warn(&mut self, key: &str, reason: impl Display) {
        self.warnings
            .push(format!("skipping TensorBoard value {key:?}: {reason}"));
    }

    /// One image of a batch is skipped; the others may still be logged.
    fn warn_image(&mut self, key: &str, reason: impl Display) {
        self.warnings.push(format!(
            "skipping an image of TensorBoard value {key:?}: {reason}"
        ));
    }
}

fn has_items(row: &Row) -> bool {
    !row.items.is_empty()
}

/// A simple_value at f32's shortest digits (`0.33333334`, not the f64
/// widening `0.3333333432674408`), in wandb-core's number style.
fn f32_json(v: f32) -> String {
    let widened = if v.is_finite() {
        v.to_string().parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    };
    f64_json(widened)
}

fn f64_json(v: f64) -> String {
    let mut out = String::new();
    json::write_float(v, &mut out);
    out
}

/// The `images` plugin's tensor: width, height, then encoded images.
fn image_batch(tensor: TensorProto) -> Result<(i64, i64, Vec<Vec<u8>>), ValueError> {
    let mut strings = tensor.string_val;
    if strings.len() < 3 {
        return Err(ValueError::TooFewImageStrings(strings.len()));
    }
    let images = strings.split_off(2);
    let dimension = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(ValueError::ImageDimensions)
    };
    Ok((
        dimension(strings[0].as_slice())?,
        dimension(strings[1].as_slice())?,
        images,
    ))
}

/// Format (also the file extension) and size, from the image's header.
fn probe_image(bytes: &[u8]) -> Result<(&'static str, usize, usize), String> {
    let format = match imagesize::image_type(bytes) {
        Ok(imagesize::ImageType::Png) => "png",
        Ok(imagesize::ImageType::Jpeg) => "jpeg",
        Ok(imagesize::ImageType::Gif) => "gif",
        _ => return Err("failed to read image: failed to parse image format".to_owned()),
    };
    let size = imagesize::blob_size(bytes).map_err(|e| format!("failed to read image: {e}"))?;
    Ok((format, size.width, size.height))
}

/// The chart wandb-core adds for a PR curve: W&B's line plot of the table
/// logged at `key`.
fn pr_chart(key: &str) -> String {
    let named = |name: &str| object([("name", text(name))]);
    let arg = |name: &str, value: &str| object([("name", text(name)), ("value", text(value))]);
    let query = object([
        ("name", text("runSets")),
        ("args", Value::Array(vec![arg("runSets", "${runSets}")])),
        (
            "fields",
            Value::Array(vec![
                named("id"),
                named("name"),
                named("_defaultColorIndex"),
                object([
                    ("name", text("summaryTable")),
                    ("args", Value::Array(vec![arg("tableKey", key)])),
                ]),
            ]),
        ),
    ]);
    object([
        ("panel_type", text("Vega2")),
        (
            "panel_config",
            object([
                ("panelDefId", text("wandb/line/v0")),
                (
                    "fieldSettings",
                    object([("x", text("recall")), ("y", text("precision"))]),
                ),
                (
                    "stringSettings",
                    object([("title", Value::Str(format!("{key} Precision v. Recall")))]),
                ),
                (
                    "transform",
                    object([("name", text("tableWithLeafColNames"))]),
                ),
                (
                    "userQuery",
                    object([("queryFields", Value::Array(vec![query]))]),
                ),
            ]),
        ),
    ])
    .to_json()
}

/// 32 characters from `[a-z0-9]`, as wandb-core names media files.
fn media_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| char::from(CHARS[fastrand::usize(..CHARS.len())]))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn text(s: &str) -> Value {
    Value::Str(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HistogramProto, Image, PluginData, Summary, SummaryMetadata, dtype};
    use crate::tensor::tests::float_tensor;

    /// A valid 1×1 RGBA PNG.
    const PNG_1X1: [u8; 67] = [
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
        0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    fn event(step: i64, wall_time: f64, values: Vec<SummaryValue>) -> Event {
        Event {
            wall_time,
            step,
            summary: Some(Summary { value: values }),
        }
    }

    fn value(tag: &str, kind: Kind) -> SummaryValue {
        SummaryValue {
            tag: tag.to_owned(),
            metadata: None,
            kind: Some(kind),
        }
    }

    fn scalar(tag: &str, v: f32) -> SummaryValue {
        value(tag, Kind::SimpleValue(v))
    }

    fn with_plugin(mut v: SummaryValue, plugin: &str) -> SummaryValue {
        v.metadata = Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: plugin.to_owned(),
            }),
        });
        v
    }

    fn items(row: &Row) -> Vec<(&str, &str)> {
        row.items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn converter() -> (tempfile::TempDir, Converter) {
        let dir = tempfile::tempdir().unwrap();
        let conv = Converter::new("", dir.path());
        (dir, conv)
    }

    #[test]
    fn same_step_events_merge() {
        let (_dir, mut conv) = converter();
        // A file's leading file_version event: step 0, no values.
        assert_eq!(
            conv.event(Event {
                wall_time: 0.5,
                step: 0,
                summary: None
            }),
            None
        );
        assert_eq!(conv.event(event(0, 1.0, vec![scalar("loss", 1.0)])), None);
        assert_eq!(conv.event(event(0, 2.0, vec![scalar("acc", 0.0)])), None);
        let row0 = conv
            .event(event(1, 3.0, vec![scalar("loss", 0.5)]))
            .unwrap();
        assert_eq!((row0.step, row0.wall_time), (0, 2.0));
        assert_eq!(items(&row0), [("loss", "1"), ("acc", "0")]);
        // A value-less event of the same step still sets the time.
        assert_eq!(conv.event(event(1, 4.0, vec![])), None);
        let row1 = conv
            .event(event(0, 5.0, vec![scalar("loss", 0.25)]))
            .unwrap();
        assert_eq!((row1.step, row1.wall_time), (1, 4.0));
        assert_eq!(items(&row1), [("loss", "0.5")]);
        let again = conv.finish().unwrap();
        assert_eq!((again.step, again.wall_time), (0, 5.0));
        assert_eq!(items(&again), [("loss", "0.25")]);
        assert_eq!(conv.finish(), None);
        assert!(conv.take_warnings().is_empty());
    }

    #[test]
    fn rows_without_items_are_not_returned() {
        let (_dir, mut conv) = converter();
        assert_eq!(conv.event(event(0, 1.0, vec![scalar("", 1.0)])), None);
        assert_eq!(conv.event(event(1, 2.0, vec![scalar("x", 1.0)])), None);
        // A value-less event of a new step ends the previous row...
        assert!(conv.event(event(2, 3.0, vec![])).is_some());
        // ...but makes none of its own.
        assert_eq!(conv.finish(), None);
    }

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        let (_dir, mut conv) = converter();
        conv.event(event(
            3,
            1.0,
            vec![scalar("loss", 1.0), scalar("loss", 2.0)],
        ));
        let row = conv.finish().unwrap();
        assert_eq!(items(&row), [("loss", "1"), ("loss", "2")]);
    }

    #[test]
    fn keys_are_namespaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut conv = Converter::new("train", dir.path());
        conv.event(event(0, 1.0, vec![scalar("epoch/loss", 1.0)]));
        assert_eq!(items(&conv.finish().unwrap()), [("train/epoch/loss", "1")]);
    }

    #[test]
    fn scalar_formatting() {
        let cases = [
            (1.0f32 / 3.0, "0.33333334"),
            (1.8, "1.8"),
            (0.1, "0.1"),
            (1e6, "1e+06"),
            (1e-7, "1e-07"),
            (f32::INFINITY, "Infinity"),
            (f32::NEG_INFINITY, "-Infinity"),
            (f32::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(f32_json(v), want, "{v}");
        }
    }

    #[test]
    fn empty_tag_is_warned_and_skipped() {
        let (_dir, mut conv) = converter();
        conv.event(event(0, 1.0, vec![scalar("", 1.0), scalar("ok", 2.0)]));
        assert_eq!(items(&conv.finish().unwrap()), [("ok", "2")]);
        let warnings = conv.take_warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("empty key"), "{warnings:?}");
        assert!(conv.take_warnings().is_empty());
    }

    #[test]
    fn plugin_is_remembered_per_key() {
        let (_dir, mut conv) = converter();
        let first = with_plugin(
            value("loss", Kind::Tensor(float_tensor(&[], &[0.1]))),
            "scalars",
        );
        conv.event(event(0, 1.0, vec![first]));
        // TensorBoard sends the metadata only with a tag's first value.
        let double = TensorProto {
            dtype: dtype::DOUBLE,
            double_val: vec![0.25],
            ..Default::default()
        };
        let later = value("loss", Kind::Tensor(double.clone()));
        // A key that never declared a plugin: a bare tensor is ignored.
        let other = value("other", Kind::Tensor(double));
        let row0 = conv.event(event(1, 2.0, vec![later, other])).unwrap();
        assert_eq!(items(&row0), [("loss", "0.10000000149011612")]);
        assert_eq!(items(&conv.finish().unwrap()), [("loss", "0.25")]);
        assert!(conv.take_warnings().is_empty());
    }

    #[test]
    fn scalar_tensor_with_two_values_is_warned() {
        let (_dir, mut conv) = converter();
        let two = with_plugin(
            value("x", Kind::Tensor(float_tensor(&[2], &[1.0, 2.0]))),
            "scalars",
        );
        conv.event(event(0, 1.0, vec![two]));
        assert_eq!(conv.finish(), None);
        assert_eq!(conv.take_warnings().len(), 1);
    }

    #[test]
    fn unknown_plugins_are_ignored() {
        let (_dir, mut conv) = converter();
        let notes = with_plugin(value("notes", Kind::Tensor(TensorProto::default())), "text");
        let hparams = with_plugin(value("hp", Kind::SimpleValue(1.0)), "hparams");
        conv.event(event(0, 1.0, vec![notes, hparams]));
        assert_eq!(conv.finish(), None);
        assert!(conv.take_warnings().is_empty());
    }

    #[test]
    fn known_plugin_with_wrong_value_is_warned() {
        let (_dir, mut conv) = converter();
        let wrong = with_plugin(value("pr", Kind::SimpleValue(1.0)), "pr_curves");
        conv.event(event(0, 1.0, vec![wrong]));
        assert_eq!(conv.finish(), None);
        let warnings = conv.take_warnings();
        assert!(
            warnings[0].contains("unexpected pr_curves value type"),
            "{warnings:?}"
        );
    }

    #[test]
    fn histograms() {
        let (_dir, mut conv) = converter();
        let rows = float_tensor(&[2, 3], &[0.0, 1.0, 3.0, 1.0, 2.0, 4.0]);
        let tensor = with_plugin(value("w", Kind::Tensor(rows)), "histograms");
        let proto = HistogramProto {
            min: 0.0,
            bucket_limit: vec![1.0, 2.0],
            bucket: vec![3.0, 4.0],
            ..Default::default()
        };
        let histo = value("h", Kind::Histo(proto));
        let nan = with_plugin(
            value(
                "bad",
                Kind::Tensor(float_tensor(&[1, 3], &[0.0, 1.0, f32::NAN])),
            ),
            "histograms",
        );
        conv.event(event(0, 1.0, vec![tensor, histo, nan]));
        let want = r#"{"_type":"histogram","bins":[0,1,2],"values":[3,4]}"#;
        assert_eq!(items(&conv.finish().unwrap()), [("w", want), ("h", want)]);
        assert_eq!(conv.take_warnings().len(), 1);
    }

    fn image(width: i32, height: i32, bytes: &[u8]) -> Kind {
        Kind::Image(Image {
            height,
            width,
            encoded_image_string: bytes.to_vec(),
        })
    }

    fn assert_media_name(path: &str, ext: &str) {
        let id = path
            .strip_prefix("media/images/")
            .and_then(|rest| rest.strip_suffix(ext))
            .unwrap_or_else(|| panic!("unexpected media path {path}"));
        assert_eq!(id.len(), 32, "{path}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }

    #[test]
    fn single_image() {
        let (dir, mut conv) = converter();
        conv.event(event(0, 1.0, vec![value("img", image(1, 1, &PNG_1X1))]));
        let row = conv.finish().unwrap();
        assert_eq!(row.media.len(), 1);
        let path = &row.media[0];
        assert_media_name(path, ".png");
        assert_eq!(fs::read(dir.path().join(path)).unwrap(), PNG_1X1);
        let want = format!(
            r#"{{"_type":"images/separated","count":1,"filenames":["{path}"],"format":"png","height":1,"width":1}}"#
        );
        assert_eq!(items(&row), [("img", want.as_str())]);
    }

    #[test]
    fn image_batch_skips_bad_images() {
        let (dir, mut conv) = converter();
        let batch = TensorProto {
            dtype: dtype::STRING,
            string_val: vec![
                b"1".to_vec(),
                b"1".to_vec(),
                PNG_1X1.to_vec(),
                b"not an image".to_vec(),
                PNG_1X1.to_vec(),
            ],
            ..Default::default()
        };
        let v = with_plugin(value("imgs", Kind::Tensor(batch)), "images");
        conv.event(event(0, 1.0, vec![v]));
        let row = conv.finish().unwrap();
        assert_eq!(row.media.len(), 2);
        assert_ne!(row.media[0], row.media[1]);
        for path in &row.media {
            assert!(dir.path().join(path).is_file());
        }
        assert!(row.items[0].1.contains(r#""count":2,"#));
        assert_eq!(conv.take_warnings().len(), 1);
    }

    #[test]
    fn image_of_the_wrong_size_is_skipped() {
        let (dir, mut conv) = converter();
        conv.event(event(0, 1.0, vec![value("img", image(2, 1, &PNG_1X1))]));
        assert_eq!(conv.finish(), None);
        let warnings = conv.take_warnings();
        assert!(
            warnings[0].contains("expected dimensions (2, 1), but saw (1, 1)"),
            "{warnings:?}"
        );
        assert!(!dir.path().join("media").exists());
    }

    #[test]
    fn image_tensor_errors() {
        fn strings(s: &[&[u8]]) -> TensorProto {
            TensorProto {
                string_val: s.iter().map(|b| b.to_vec()).collect(),
                ..Default::default()
            }
        }
        let (_dir, mut conv) = converter();
        let short = with_plugin(value("a", Kind::Tensor(strings(&[b"1", b"1"]))), "images");
        let bad_dims = with_plugin(
            value("b", Kind::Tensor(strings(&[b"2a", b"1", &PNG_1X1]))),
            "images",
        );
        conv.event(event(0, 1.0, vec![short, bad_dims]));
        assert_eq!(conv.finish(), None);
        let warnings = conv.take_warnings();
        assert!(
            warnings[0].contains("at least 3 values, but it has 2"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("couldn't parse image dimensions"),
            "{warnings:?}"
        );
    }

    #[test]
    fn pr_curve() {
        let (dir, mut conv) = converter();
        let mut values = vec![0.0f32; 12];
        values.extend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let v = with_plugin(
            value("pr", Kind::Tensor(float_tensor(&[6, 3], &values))),
            "pr_curves",
        );
        conv.event(event(9, 1.0, vec![v]));
        let row = conv.finish().unwrap();

        assert_eq!(row.media.len(), 1);
        let path = &row.media[0];
        assert!(
            path.starts_with("media/table/") && path.ends_with(".table.json"),
            "{path}"
        );
        let table = fs::read_to_string(dir.path().join(path)).unwrap();
        assert_eq!(
            table,
            r#"{"columns":["recall","precision"],"data":[[4,1],[5,2],[6,3]]}"#
        );
        let sha = sha256_hex(table.as_bytes());
        assert_eq!(sha.len(), 64);
        let want = format!(
            r#"{{"_type":"table-file","ncols":2,"nrows":3,"path":"{path}","sha256":"{sha}","size":{}}}"#,
            table.len()
        );
        assert_eq!(items(&row), [("pr", want.as_str())]);

        let chart = concat!(
            r#"{"panel_type":"Vega2","panel_config":{"panelDefId":"wandb/line/v0","#,
            r#""fieldSettings":{"x":"recall","y":"precision"},"#,
            r#""stringSettings":{"title":"pr Precision v. Recall"},"#,
            r#""transform":{"name":"tableWithLeafColNames"},"#,
            r#""userQuery":{"queryFields":[{"name":"runSets","#,
            r#""args":[{"name":"runSets","value":"${runSets}"}],"#,
            r#""fields":[{"name":"id"},{"name":"name"},{"name":"_defaultColorIndex"},"#,
            r#"{"name":"summaryTable","args":[{"name":"tableKey","value":"pr"}]}]}]}}}"#,
        );
        assert_eq!(row.charts, [("pr".to_owned(), chart.to_owned())]);
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
