//! Parquet output: what pandas, polars, DuckDB and Spark read fastest.
//!
//! Row groups are bounded in rows and bytes, because the writer holds the
//! row group it is filling in memory; Snappy, the codec every reader has.
//! The file's key-value metadata carries each run's summary and config as
//! JSON (`wandb.runs`), so one file is enough to know what was exported.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::{ExportError, Sink};

/// Largest row group, in bytes (as the writer estimates them, encoded).
const ROW_GROUP_BYTES: usize = 64 << 20;

pub struct ParquetSink {
    writer: ArrowWriter<BufWriter<File>>,
}

impl ParquetSink {
    pub fn new(
        file: File,
        schema: Arc<Schema>,
        metadata: Vec<(String, String)>,
        row_group_rows: usize,
    ) -> Result<Self, ExportError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("wandb-core-rs {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let writer = ArrowWriter::try_new(BufWriter::new(file), schema, Some(props))?;
        Ok(Self { writer })
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        self.writer.write(batch)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        let out = self.writer.into_inner()?;
        out.into_inner()
            .map_err(|e| ExportError::Write(e.into_error()))?;
        Ok(())
    }
}
