//! ML features: one row per driver and one per customer, as Parquet files in the lake
//! (`<lake>/ml/driver_features.parquet`, `<lake>/ml/customer_features.parquet`), from gold.
//!
//! Guarantees: the features are computed from one version of each gold table, named in the
//! file's key-value metadata (`ridelake.gold.<table>.version`) together with `ridelake.as_of`,
//! the instant recency is measured from (the latest ride request in gold). Each file is written
//! with one PUT (object stores and local folders both make it appear whole), so a reader sees the
//! previous file or the new one. Columns are documented in [`FEATURE_DOCS`] and in the Parquet
//! schema's field metadata (`description`).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTableBuilder;
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{ObjectStoreExt, PutPayload};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use polars::prelude::*;
use serde::Serialize;

use crate::arrow_bridge::df_to_record_batches;
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::io;
use crate::layout::LakeLayout;

/// Every feature column and what it means (the same for drivers and customers; `<party>_id` is
/// `driver_id` or `customer_id`).
pub const FEATURE_DOCS: [(&str, &str); 17] = [
    ("<party>_id", "the user id"),
    ("rides", "rides requested (customers) or assigned (drivers), in silver"),
    ("completed", "rides completed"),
    ("cancelled", "rides cancelled"),
    ("cancellation_rate", "cancelled / rides"),
    ("completion_rate", "completed / rides"),
    ("distance_km", "distance of completed rides, km"),
    ("fare", "fare of completed rides"),
    ("mean_distance_km", "distance_km / completed (null without a completed ride)"),
    ("mean_fare", "fare / completed (null without a completed ride)"),
    ("mean_rating", "mean rating of completed rides (drivers: given by customers; customers: given by drivers)"),
    ("rating_count", "completed rides that were rated"),
    ("active_days", "days with at least one ride"),
    ("first_ride_at", "earliest ride request (UTC)"),
    ("last_ride_at", "latest ride request (UTC)"),
    ("tenure_days", "days from the first to the last ride request"),
    ("recency_days", "days from the last ride request to as_of (the latest request in gold)"),
];

/// One feature file written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureFile {
    /// `driver_features` or `customer_features`.
    pub name: String,
    /// Where it is (URL).
    pub url: String,
    /// Rows (drivers or customers).
    pub rows: u64,
    /// Gold table → Delta version the features come from.
    pub gold_versions: Vec<(String, i64)>,
    /// Recency is measured from this instant (µs since the epoch, UTC).
    pub as_of_us: Option<i64>,
}

fn days(expr: Expr) -> Expr {
    expr.cast(DataType::Int64).cast(DataType::Float64) / lit(86_400_000_000.0)
}

fn features(totals: DataFrame, daily: DataFrame, party: &str, as_of_us: Option<i64>) -> Result<DataFrame> {
    let active = daily.lazy().group_by([col(party)]).agg([len().cast(DataType::Int64).alias("active_days")]);
    let per_completed = |name: &str| {
        when(col("completed").gt(lit(0))).then(col(name) / col("completed").cast(DataType::Float64)).otherwise(lit(NULL).cast(DataType::Float64))
    };
    let as_of = lit(as_of_us.unwrap_or_default());
    totals
        .lazy()
        .join(active, [col(party)], [col(party)], JoinArgs::new(JoinType::Left))
        .select([
            col(party),
            col("rides"),
            col("completed"),
            col("cancelled"),
            col("cancellation_rate"),
            (col("completed").cast(DataType::Float64) / col("rides").cast(DataType::Float64)).alias("completion_rate"),
            col("distance_km"),
            col("fare"),
            per_completed("distance_km").alias("mean_distance_km"),
            per_completed("fare").alias("mean_fare"),
            col("mean_rating"),
            col("rating_count"),
            col("active_days").fill_null(lit(0i64)),
            col("first_ride_at"),
            col("last_ride_at"),
            days(col("last_ride_at").cast(DataType::Int64) - col("first_ride_at").cast(DataType::Int64)).alias("tenure_days"),
            days(as_of - col("last_ride_at").cast(DataType::Int64)).alias("recency_days"),
        ])
        .sort([party], Default::default())
        .collect()
        .step("computing features")
}

/// Writes the driver and customer feature files under `<lake>/ml/`.
pub async fn export_features(layout: &LakeLayout) -> Result<Vec<FeatureFile>> {
    let options = layout.storage_options();
    let mut gold = HashMap::new();
    for table in ["driver_stats", "driver_daily", "customer_totals", "customer_daily"] {
        let url = layout.gold(table)?;
        let delta = io::open(&url, &options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
        let version = delta.version().unwrap_or_default() as i64;
        gold.insert(table, (io::read_all(&delta).await?, version));
    }
    let last = |table: &str| -> Result<Option<i64>> {
        let frame = &gold[table].0;
        let column = frame.column("last_ride_at").step("reading last rides")?.as_materialized_series().cast(&DataType::Int64).step("reading last rides")?;
        Ok(column.i64().step("reading last rides")?.max())
    };
    let as_of_us = [last("driver_stats")?, last("customer_totals")?].into_iter().flatten().max();

    let ml_url = layout.storage.table_url(&["ml"])?;
    if let Ok(path) = ml_url.to_file_path() {
        std::fs::create_dir_all(&path).map_err(|e| LakehouseError::Output(format!("cannot create {}: {e}", path.display())))?;
    }
    let store = DeltaTableBuilder::from_url(ml_url.clone())
        .map_err(|e| LakehouseError::delta(&ml_url, e))?
        .with_storage_options(options.clone())
        .build_storage()
        .map_err(|e| LakehouseError::delta(&ml_url, e))?
        .object_store(None);
    let mut out = Vec::new();
    for (name, totals, daily, party) in [
        ("driver_features", "driver_stats", "driver_daily", "driver_id"),
        ("customer_features", "customer_totals", "customer_daily", "customer_id"),
    ] {
        let frame = features(gold[totals].0.clone(), gold[daily].0.clone(), party, as_of_us)?;
        let versions = vec![(totals.to_owned(), gold[totals].1), (daily.to_owned(), gold[daily].1)];
        let bytes = to_parquet(&frame, party, &versions, as_of_us)?;
        let path = Path::from(format!("{name}.parquet"));
        store.put(&path, PutPayload::from(bytes)).await.map_err(|e| LakehouseError::delta(&ml_url, e.into()))?;
        out.push(FeatureFile { name: name.into(), url: format!("{}/{name}.parquet", ml_url.as_str().trim_end_matches('/')), rows: frame.height() as u64, gold_versions: versions, as_of_us });
    }
    Ok(out)
}

fn to_parquet(frame: &DataFrame, party: &str, versions: &[(String, i64)], as_of_us: Option<i64>) -> Result<Vec<u8>> {
    let batches = df_to_record_batches(frame).step("preparing features")?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Err(LakehouseError::Output("no feature rows".into())),
    };
    let documented: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let key = if f.name() == party { "<party>_id" } else { f.name().as_str() };
            let doc = FEATURE_DOCS.iter().find(|(name, _)| *name == key).map(|(_, d)| *d).unwrap_or_default();
            f.as_ref().clone().with_metadata(HashMap::from([("description".to_owned(), doc.to_owned())]))
        })
        .collect();
    let schema = Arc::new(Schema::new(documented));
    let mut metadata: Vec<KeyValue> = versions.iter().map(|(t, v)| KeyValue::new(format!("ridelake.gold.{t}.version"), v.to_string())).collect();
    metadata.push(KeyValue::new("ridelake.as_of".to_owned(), as_of_us.map(|v| v.to_string())));
    let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).set_key_value_metadata(Some(metadata)).build();
    let mut buffer = Vec::new();
    let failed = |e: deltalake::parquet::errors::ParquetError| LakehouseError::Output(format!("writing features: {e}"));
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties)).map_err(failed)?;
    for batch in batches {
        let batch = batch.with_schema(schema.clone()).map_err(LakehouseError::Arrow)?;
        writer.write(&batch).map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(buffer)
}
