//! Publishes gold to PostgreSQL, for Power BI (Import or DirectQuery) and any SQL client.
//!
//! Guarantees:
//! - Each gold table becomes `<schema>.<table>` with matching types, its primary key and comments
//!   (the table's description and the gold Delta version it reflects; a comment per known column).
//! - One publish is one transaction over every table: a reader sees the previous publish or the
//!   new one, never a mix, and a publish killed midway leaves the previous one intact.
//! - Idempotent and incremental: `<schema>.ridelake_published` records, in the same transaction,
//!   the gold version each table reflects; an unchanged table is skipped, a day-partitioned table
//!   whose gold version moved has only the changed days replaced (known from the Delta log), and
//!   any other change replaces the whole table.
//! - Concurrent publishes are serialized by a transaction-scoped advisory lock on the schema.
//!   Rows are replaced with `DELETE` and `COPY` under MVCC, so readers are not blocked; only a
//!   change of a table's columns recreates it (DDL).
//! - The connection string comes from the caller or `RIDELAKE_POSTGRES_DSN`; it is never part of
//!   an error message (only the server's own messages are). Its `sslmode`/`sslrootcert` choose
//!   TLS as libpq does ([`crate::postgres_tls`]).

use std::collections::BTreeSet;
use std::pin::pin;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use crate::error::{LakehouseError, PolarsContext, Result};
use crate::gold::{self, GOLD_TABLES};
use crate::io::{self, DataFile};
use crate::layout::LakeLayout;
use crate::postgres_tls::TlsSettings;

/// Environment variable holding the connection string when the caller gives none.
pub const DSN_ENV: &str = "RIDELAKE_POSTGRES_DSN";
/// Bookkeeping table (in the target schema): which gold version each table reflects.
pub const PUBLISHED_TABLE: &str = "ridelake_published";

/// What a publish did to one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedTable {
    /// Gold table (and Postgres table) name.
    pub table: String,
    /// Gold Delta version the Postgres table now reflects.
    pub gold_version: i64,
    /// `unchanged`, `days` (only the changed days replaced) or `full`.
    pub mode: String,
    /// Days replaced (`days` mode).
    pub days: u64,
    /// Rows written.
    pub rows_written: u64,
}

/// A PostgreSQL error with what we were doing, the server's message, and where it happened (the
/// table and COPY line, the constraint), never the row's values (the server's `detail` may hold
/// them, so it is left out).
fn pg_error(context: &str) -> impl Fn(tokio_postgres::Error) -> LakehouseError + '_ {
    move |e| {
        let detail = match e.as_db_error() {
            Some(db) => {
                let mut detail = db.message().to_owned();
                if let Some(place) = db.where_() {
                    detail.push_str(&format!(" (at {place})"));
                }
                if let Some(constraint) = db.constraint() {
                    detail.push_str(&format!(" (constraint {constraint})"));
                }
                detail
            }
            // A TLS or connection failure keeps its cause (the certificate problem, the refused
            // connection) in the source; its message may not name it.
            None => match std::error::Error::source(&e).map(ToString::to_string) {
                Some(cause) if !e.to_string().contains(&cause) => format!("{e}: {cause}"),
                _ => e.to_string(),
            },
        };
        LakehouseError::Postgres(format!("{context}: {detail}"))
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A column's values in the shape the binary COPY protocol wants.
enum Values {
    Int(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    Bool(Vec<Option<bool>>),
}

impl Values {
    fn of(column: &Column) -> Result<(Values, Type, &'static str)> {
        let series = column.as_materialized_series();
        let step = "converting gold for Postgres";
        Ok(match series.dtype() {
            DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::UInt8 | DataType::UInt16 => {
                let s = series.cast(&DataType::Int32).step(step)?;
                (Values::Int4(s.i32().step(step)?.iter().collect()), Type::INT4, "integer")
            }
            d if d.is_integer() => {
                let s = series.cast(&DataType::Int64).step(step)?;
                (Values::Int(s.i64().step(step)?.iter().collect()), Type::INT8, "bigint")
            }
            d if d.is_float() => {
                let s = series.cast(&DataType::Float64).step(step)?;
                (Values::Float(s.f64().step(step)?.iter().collect()), Type::FLOAT8, "double precision")
            }
            DataType::Boolean => (Values::Bool(series.bool().step(step)?.iter().collect()), Type::BOOL, "boolean"),
            DataType::Datetime(_, zone) => {
                // The physical value is UTC-based whatever the zone; only the unit is normalised.
                let s = series.cast(&DataType::Datetime(TimeUnit::Microseconds, zone.clone())).step(step)?.cast(&DataType::Int64).step(step)?;
                let values = s.i64().step(step)?.iter().map(|v| v.and_then(DateTime::<Utc>::from_timestamp_micros)).collect();
                (Values::Timestamp(values), Type::TIMESTAMPTZ, "timestamptz")
            }
            _ => {
                let s = series.cast(&DataType::String).step(step)?;
                (Values::Text(s.str().step(step)?.iter().map(|v| v.map(str::to_owned)).collect()), Type::TEXT, "text")
            }
        })
    }

    fn get(&self, row: usize) -> &(dyn ToSql + Sync) {
        match self {
            Values::Int(v) => &v[row],
            Values::Int4(v) => &v[row],
            Values::Float(v) => &v[row],
            Values::Text(v) => &v[row],
            Values::Timestamp(v) => &v[row],
            Values::Bool(v) => &v[row],
        }
    }
}

/// Publishes every gold table of the lake to `schema` on the server at `dsn` (or
/// [`DSN_ENV`]); returns what was done per table.
pub async fn publish_postgres(layout: &LakeLayout, dsn: Option<&str>, schema: &str) -> Result<Vec<PublishedTable>> {
    let dsn = match dsn {
        Some(d) => d.to_owned(),
        None => std::env::var(DSN_ENV).map_err(|_| LakehouseError::Postgres(format!("no connection string: pass one or set {DSN_ENV}")))?,
    };
    let (dsn, tls) = TlsSettings::split(&dsn)?;
    let mut config: tokio_postgres::Config = dsn.parse().map_err(pg_error("reading the connection string"))?;
    config.ssl_mode(tls.ssl_mode());
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.client_config()?);
    let (mut client, connection) = config.connect(connector).await.map_err(pg_error("cannot connect to PostgreSQL"))?;
    let connection = tokio::spawn(connection);
    let result = async {
        let tx = client.transaction().await.map_err(pg_error("starting the publish transaction"))?;
        let lock = format!("SELECT pg_advisory_xact_lock(hashtext({}))", literal(&format!("ridelake.publish:{schema}")));
        tx.batch_execute(&lock).await.map_err(pg_error("waiting for other publishes"))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{p} (table_name text PRIMARY KEY, source text NOT NULL, \
             gold_version bigint NOT NULL, columns text NOT NULL, rows bigint NOT NULL, published_at timestamptz NOT NULL DEFAULT now()); \
             COMMENT ON TABLE {s}.{p} IS 'ridelake: the gold Delta version each published table reflects'",
            s = quote(schema),
            p = quote(PUBLISHED_TABLE)
        ))
        .await
        .map_err(pg_error("preparing the schema"))?;
        let mut out = Vec::new();
        for table in GOLD_TABLES {
            if let Some(done) = publish_table(&tx, layout, schema, table).await? {
                out.push(done);
            }
        }
        tx.commit().await.map_err(pg_error("committing the publish"))?;
        Ok(out)
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}

async fn publish_table(tx: &Transaction<'_>, layout: &LakeLayout, schema: &str, table: &str) -> Result<Option<PublishedTable>> {
    let options = layout.storage_options();
    let url = layout.gold(table)?;
    let Some(delta) = io::open(&url, &options).await? else { return Ok(None) };
    let version = delta.version().unwrap_or_default() as i64;
    let files = io::files(&delta)?;
    let schema_arrow = io::arrow_schema(&delta)?;
    let target = format!("{}.{}", quote(schema), quote(table));

    // Column definitions from the gold schema (an empty read gives the typed columns).
    let empty = io::read_files(&delta, &[]).await?;
    let mut definitions = Vec::new();
    for column in empty.columns() {
        let (_, _, sql) = Values::of(column)?;
        definitions.push(format!("{} {sql}", quote(column.name())));
    }
    let signature = definitions.join(", ");
    let previous = tx
        .query_opt(&format!("SELECT gold_version, columns, source FROM {}.{} WHERE table_name = $1", quote(schema), quote(PUBLISHED_TABLE)), &[&table])
        .await
        .map_err(pg_error("reading what was published"))?
        .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, String>(2)));
    let source = url.to_string();
    // The same columns: rows are replaced in place (no DDL, so readers are never blocked); from
    // the same gold table too: its version tells what changed.
    let same_columns = previous.as_ref().is_some_and(|(_, columns, _)| *columns == signature);
    let same_table = same_columns && previous.as_ref().is_some_and(|(_, _, from)| *from == source);
    if same_table && previous.as_ref().is_some_and(|(v, _, _)| *v == version) {
        return Ok(Some(PublishedTable { table: table.into(), gold_version: version, mode: "unchanged".into(), days: 0, rows_written: 0 }));
    }

    // Incremental when the table is day-partitioned, its columns did not change and the
    // published version is still in the Delta log.
    let day_partitioned = schema_arrow.field_with_name("year").is_ok() && files.iter().all(|f| f.day().is_some());
    let mut changed_days: Option<BTreeSet<(i32, i32, i32)>> = None;
    if let (true, true, Some((published, _, _))) = (day_partitioned, same_table, &previous)
        && *published < version
        && let Ok(before) = io::open_version(&url, &options, *published as u64).await
    {
        let (a, b): (BTreeSet<DataFile>, BTreeSet<DataFile>) = (io::files(&before)?.into_iter().collect(), files.iter().cloned().collect());
        changed_days = Some(a.symmetric_difference(&b).filter_map(DataFile::day).collect());
    }

    let key = gold::GOLD_KEYS.iter().find(|(t, _)| *t == table).map(|(_, k)| *k).unwrap_or(&[]);
    let rows = match &changed_days {
        Some(days) => {
            if !days.is_empty() {
                let list = days.iter().map(|(y, m, d)| format!("({y},{m},{d})")).collect::<Vec<_>>().join(",");
                tx.batch_execute(&format!("DELETE FROM {target} WHERE (year, month, day) IN ({list})")).await.map_err(pg_error("replacing changed days"))?;
            }
            let wanted: Vec<DataFile> = files.iter().filter(|f| f.day().is_some_and(|d| days.contains(&d))).cloned().collect();
            io::read_files(&delta, &wanted).await?
        }
        None if same_columns => {
            // MVCC: readers keep seeing the old rows until the commit, and are not blocked.
            tx.batch_execute(&format!("DELETE FROM {target}")).await.map_err(pg_error("replacing the table"))?;
            io::read_files(&delta, &files).await?
        }
        None => {
            let primary = if key.is_empty() { String::new() } else { format!(", PRIMARY KEY ({})", key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")) };
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {target}; CREATE TABLE {target} ({signature}{primary})"))
                .await
                .map_err(pg_error("creating the table"))?;
            io::read_files(&delta, &files).await?
        }
    };
    let written = copy_rows(tx, &target, &rows).await?;

    let description = delta.snapshot().ok().and_then(|s| s.metadata().description().map(str::to_owned)).unwrap_or_default();
    let mut comments = format!("COMMENT ON TABLE {target} IS {};", literal(&format!("{description} [ridelake gold version {version}]")));
    for column in empty.columns() {
        if let Some(doc) = gold::column_doc(column.name()) {
            comments.push_str(&format!("COMMENT ON COLUMN {target}.{} IS {};", quote(column.name()), literal(doc)));
        }
    }
    tx.batch_execute(&comments).await.map_err(pg_error("commenting the table"))?;
    tx.execute(
        &format!(
            "INSERT INTO {s}.{p} (table_name, source, gold_version, columns, rows, published_at) VALUES ($1, $4, $2, $3, (SELECT count(*) FROM {target}), now()) \
             ON CONFLICT (table_name) DO UPDATE SET source = EXCLUDED.source, gold_version = EXCLUDED.gold_version, columns = EXCLUDED.columns, \
             rows = EXCLUDED.rows, published_at = now()",
            s = quote(schema),
            p = quote(PUBLISHED_TABLE)
        ),
        &[&table, &version, &signature, &source],
    )
    .await
    .map_err(pg_error("recording the published version"))?;
    let (mode, days) = match changed_days {
        Some(days) => ("days", days.len() as u64),
        None => ("full", 0),
    };
    Ok(Some(PublishedTable { table: table.into(), gold_version: version, mode: mode.into(), days, rows_written: written }))
}

/// Streams `rows` into `target` with binary COPY.
async fn copy_rows(tx: &Transaction<'_>, target: &str, rows: &DataFrame) -> Result<u64> {
    let mut columns = Vec::new();
    let mut types = Vec::new();
    let mut names = Vec::new();
    for column in rows.columns() {
        let (values, kind, _) = Values::of(column)?;
        columns.push(values);
        types.push(kind);
        names.push(quote(column.name()));
    }
    let sink = tx
        .copy_in(&format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", names.join(", ")))
        .await
        .map_err(|e| pg_error(&format!("starting COPY into {target}"))(e))?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(columns.len());
    for i in 0..rows.height() {
        row.clear();
        row.extend(columns.iter().map(|c| c.get(i)));
        writer.as_mut().write(&row).await.map_err(|e| pg_error(&format!("copying row {} into {target}", i + 1))(e))?;
    }
    writer.as_mut().finish().await.map_err(|e| pg_error(&format!("copying rows into {target} (COPY line = row number)"))(e))
}
