//! The only place that converts between arrow-rs (delta-rs) and Polars, through the Arrow C Data
//! Interface: zero-copy, ownership moves with the `release` callbacks.
//!
//! Guarantee: column names, types and nulls survive a round trip; string-like and dictionary
//! columns that delta-rs scans produce are normalised to plain strings.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, make_array};
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use polars::prelude::{Column, CompatLevel, DataFrame, DataType, IntoColumn, PlSmallStr, PolarsError, PolarsResult, Series};

fn compute(e: impl ToString) -> PolarsError {
    PolarsError::ComputeError(e.to_string().into())
}

/// An arrow-rs batch as a Polars frame.
pub fn record_batch_to_df(batch: &RecordBatch) -> PolarsResult<DataFrame> {
    let mut columns: Vec<Column> = Vec::with_capacity(batch.num_columns());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let (array, schema) = to_ffi(&array.to_data()).map_err(compute)?;
        // SAFETY: arrow-rs and polars-arrow FFI structs are both #[repr(C)] mirrors of the Arrow C
        // Data Interface; transmute checks their sizes, and ownership moves with `release`.
        let schema: polars_arrow::ffi::ArrowSchema = unsafe { std::mem::transmute(schema) };
        let array: polars_arrow::ffi::ArrowArray = unsafe { std::mem::transmute(array) };
        // SAFETY: the structs were just exported by arrow-rs and are valid.
        let polars_field = unsafe { polars_arrow::ffi::import_field_from_c(&schema)? };
        let imported = unsafe { polars_arrow::ffi::import_array_from_c(array, polars_field.dtype().clone())? };
        columns.push(Series::from_arrow(PlSmallStr::from_str(field.name()), imported)?.into_column());
    }
    DataFrame::new(batch.num_rows(), columns)
}

/// Several batches as one frame (empty frame for no batches).
pub fn record_batches_to_df(batches: &[RecordBatch]) -> PolarsResult<DataFrame> {
    let mut out: Option<DataFrame> = None;
    for batch in batches {
        let df = record_batch_to_df(batch)?;
        match out.as_mut() {
            Some(acc) => {
                acc.vstack_mut(&df)?;
            }
            None => out = Some(df),
        }
    }
    Ok(out.unwrap_or_default())
}

/// A Polars frame as arrow-rs batches (strings as large/view strings as Polars exports them).
pub fn df_to_record_batches(df: &DataFrame) -> PolarsResult<Vec<RecordBatch>> {
    let mut df = df.clone();
    df.rechunk_mut();
    let mut out = Vec::new();
    for chunk in df.iter_chunks(CompatLevel::oldest(), false) {
        let (schema, arrays) = chunk.into_schema_and_arrays();
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (polars_field, array) in schema.iter_values().zip(arrays) {
            // SAFETY: as above, the other way round.
            let ffi_schema: FFI_ArrowSchema = unsafe { std::mem::transmute(polars_arrow::ffi::export_field_to_c(polars_field)) };
            let ffi_array: FFI_ArrowArray = unsafe { std::mem::transmute(polars_arrow::ffi::export_array_to_c(array)) };
            fields.push(Field::try_from(&ffi_schema).map_err(compute)?);
            columns.push(make_array(unsafe { from_ffi(ffi_array, &ffi_schema) }.map_err(compute)?));
        }
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(compute)?);
    }
    Ok(out)
}

/// The Polars type a read of an arrow-rs `field` gives (as [`record_batch_to_df`] converts it).
pub fn polars_type(field: &Field) -> PolarsResult<DataType> {
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let frame = record_batch_to_df(&RecordBatch::new_empty(schema))?;
    Ok(frame.columns().first().map_or(DataType::Null, |c| c.dtype().clone()))
}
