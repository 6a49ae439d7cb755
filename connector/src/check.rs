//! The `check` command: proves the destination can do its job before a sync starts.
//!
//! It creates a probe Delta table under `<base>/_airbyte_connection_check/`, writes one row,
//! reads the table back, and deletes every object of the probe, whatever happened. A failure
//! becomes a precise, actionable message (endpoint, credentials, bucket, region, permissions).

use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use deltalake::kernel::{DataType, StructField};
use deltalake::operations::create::CreateBuilder;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use deltalake::logstore::object_store::ObjectStoreExt;
use futures::TryStreamExt;

use crate::config::DestinationOptions;
use crate::error::{error_chain, storage_hint, storage_text};

/// Outcome of a check: success, or a message for the user.
pub async fn check(options: &DestinationOptions) -> Result<String, String> {
    let probe = format!("probe_{}", uuid::Uuid::new_v4().simple());
    let url = options
        .storage
        .table_url(&["_airbyte_connection_check", &probe])
        .map_err(|e| e.to_string())?;
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path).map_err(|e| {
            format!("cannot create folder {} under local_path: {e}", path.display())
        })?;
    }
    let mut storage_options = options.storage.storage_options();
    // A check should answer in seconds, not retry for minutes.
    storage_options.insert("max_retries".into(), "2".into());
    storage_options.insert("retry_timeout".into(), "20s".into());
    storage_options.insert("connect_timeout".into(), "5s".into());
    let where_ = options.storage.describe();
    let explain = |step: &str, e: &DeltaTableError| {
        let text = error_chain(e);
        match storage_hint(&storage_text(e)) {
            Some(hint) => format!("{hint}. ({step} on {where_} failed: {text})"),
            None => format!("{step} on {where_} failed: {text}"),
        }
    };
    let probe_run = async {
        let table = CreateBuilder::new()
            .with_location(url.to_string())
            .with_storage_options(storage_options.clone())
            .with_columns([StructField::new("probe", DataType::LONG, false)])
            .await
            .map_err(|e| explain("creating a probe table", &e))?;
        let cleanup_table = table.clone();
        let outcome = write_and_read(table, &url, &storage_options).await.map_err(|(step, e)| explain(step, &e));
        let cleanup = delete_all(&cleanup_table).await.map_err(|e| explain("deleting the probe table", &e));
        if let Ok(path) = url.to_file_path() {
            // Object deletes leave the local folders behind.
            let _ = std::fs::remove_dir_all(&path);
            if let Some(parent) = path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        outcome.and(cleanup)
    };
    match tokio::time::timeout(Duration::from_secs(90), probe_run).await {
        Ok(Ok(())) => Ok(format!("wrote, read and deleted a probe Delta table on {where_}")),
        Ok(Err(message)) => Err(message),
        Err(_) => Err(format!(
            "no answer from {where_} within 90 s: check s3_endpoint and that the server is reachable from the connector"
        )),
    }
}

async fn write_and_read(
    mut table: DeltaTable,
    url: &url::Url,
    storage_options: &std::collections::HashMap<String, String>,
) -> Result<(), (&'static str, DeltaTableError)> {
    let schema = Arc::new(Schema::new(vec![Field::new("probe", ArrowType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![42]))])
        .map_err(|e| ("building the probe row", DeltaTableError::from(e)))?;
    let mut writer = RecordBatchWriter::for_table(&table).map_err(|e| ("opening a writer", e))?;
    writer.write(batch).await.map_err(|e| ("writing a probe file", e))?;
    writer.flush_and_commit(&mut table).await.map_err(|e| ("committing the probe", e))?;
    let reread = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| ("reading the probe back", e))?
        .with_storage_options(storage_options.clone())
        .load()
        .await
        .map_err(|e| ("reading the probe back", e))?;
    let files = reread.get_file_uris().map_err(|e| ("listing the probe's files", e))?.count();
    if reread.version() != Some(1) || files != 1 {
        return Err((
            "verifying the probe",
            DeltaTableError::Generic(format!("expected version 1 with 1 file, found {:?} with {files}", reread.version())),
        ));
    }
    Ok(())
}

async fn delete_all(table: &DeltaTable) -> Result<(), DeltaTableError> {
    let store = table.object_store();
    let paths: Vec<_> = store.list(None).map_ok(|meta| meta.location).try_collect().await?;
    for path in paths {
        store.delete(&path).await?;
    }
    Ok(())
}
