//! Change-data rules on Polars frames, free of I/O so that they can be tested on their own.
//!
//! - Order: a change's place in the source's history is `_cdc_position` (`_ab_cdc_cursor`, or
//!   `(binlog file suffix << 32) | _ab_cdc_log_pos` for snapshot rows), then `_cdc_updated_at`,
//!   then `_cdc_extracted_at`. The latest change of a key wins; an older change arriving late
//!   never overwrites a newer one; an exact duplicate changes nothing.
//! - Rules: a change that breaks a rule is quarantined with the rule's name and does not touch
//!   silver; silver is the replay of the valid changes only.

use polars::prelude::*;
use ridelake_core::bronze::{CDC_CURSOR, CDC_DELETED_AT, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT, EXTRACTED_AT, RAW_ID};

use crate::error::{PolarsContext, Result};

/// The bronze columns [`prepare`] reads besides the stream's own fields (those a table lacks are
/// treated as null).
pub const BRONZE_CDC_COLUMNS: [&str; 7] = [RAW_ID, EXTRACTED_AT, CDC_CURSOR, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT, CDC_DELETED_AT];

/// Change position column.
pub const POSITION: &str = "_cdc_position";
/// Change time column (microseconds since the epoch).
pub const UPDATED: &str = "_cdc_updated_at";
/// Extraction time column (microseconds since the epoch).
pub const EXTRACTED: &str = "_cdc_extracted_at";
/// Whether the change is a delete.
pub const DELETED: &str = "_cdc_deleted";
/// Name of the rule a quarantined change broke.
pub const RULE: &str = "rule";

/// The ordering columns, in order.
pub const ORDER: [&str; 3] = [POSITION, UPDATED, EXTRACTED];

fn int64(df: &DataFrame, name: &str) -> Result<Option<Int64Chunked>> {
    let Ok(column) = df.column(name) else { return Ok(None) };
    let series = column.as_materialized_series().cast(&DataType::Int64).step("reading a CDC column")?;
    Ok(Some(series.i64().step("reading a CDC column")?.clone()))
}

fn binlog_suffix(file: &str) -> Option<i64> {
    file.rsplit('.').next().and_then(|s| s.parse::<i64>().ok())
}

/// Adds the ordering columns and the delete flag to bronze rows, and keeps `keep` columns plus
/// `_airbyte_raw_id` (the link back to the bronze row) and `deleted_at`.
pub fn prepare(bronze: &DataFrame, keep: &[&str]) -> Result<DataFrame> {
    let rows = bronze.height();
    let cursor = int64(bronze, CDC_CURSOR)?;
    let log_pos = int64(bronze, CDC_LOG_POS)?;
    let log_file = match bronze.column(CDC_LOG_FILE) {
        Ok(c) => Some(c.as_materialized_series().cast(&DataType::String).step("reading _ab_cdc_log_file")?),
        Err(_) => None,
    };
    let log_file = match &log_file {
        Some(s) => Some(s.str().step("reading _ab_cdc_log_file")?),
        None => None,
    };
    // One pass over the columns' iterators: indexing a chunked column row by row would search
    // its chunks for every row.
    let mut cursors = cursor.as_ref().map(|c| c.iter());
    let mut positions = log_pos.as_ref().map(|p| p.iter());
    let mut files = log_file.map(|f| f.iter());
    let mut position = Vec::with_capacity(rows);
    for _ in 0..rows {
        let cursor = cursors.as_mut().and_then(Iterator::next).flatten();
        let pos = positions.as_mut().and_then(Iterator::next).flatten();
        let file = files.as_mut().and_then(Iterator::next).flatten();
        position.push(match cursor {
            Some(v) => v,
            None => (file.and_then(binlog_suffix).unwrap_or(0) << 32) | (pos.unwrap_or(0) & 0xFFFF_FFFF),
        });
    }
    let time = |name: &str| -> Expr {
        if bronze.column(name).is_ok() { col(name).cast(DataType::Int64) } else { lit(NULL).cast(DataType::Int64) }
    };
    let deleted_at = if bronze.column(CDC_DELETED_AT).is_ok() {
        col(CDC_DELETED_AT)
    } else {
        lit(NULL).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
    };
    let mut exprs: Vec<Expr> = keep.iter().map(|c| col(*c)).collect();
    exprs.extend([
        col(RAW_ID),
        Series::new(POSITION.into(), position).lit(),
        time(CDC_UPDATED_AT).alias(UPDATED),
        time(EXTRACTED_AT).alias(EXTRACTED),
        deleted_at.clone().is_not_null().alias(DELETED),
        deleted_at.alias("deleted_at"),
    ]);
    bronze.clone().lazy().select(exprs).collect().step("preparing changes")
}

/// The name of the first rule a change broke, or null. `rules` are `(name, broken)` pairs;
/// deletes are checked against `delete_rules` only.
fn broken_rule(rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)]) -> Expr {
    let mut rule: Expr = lit(NULL).cast(DataType::String);
    for (name, broken) in rules.iter().rev() {
        rule = when(col(DELETED).not().and(broken.clone())).then(lit(*name)).otherwise(rule);
    }
    for (name, broken) in delete_rules.iter().rev() {
        rule = when(col(DELETED).and(broken.clone())).then(lit(*name)).otherwise(rule);
    }
    rule.alias(RULE)
}

/// The latest valid change per `key` (sorted by key), and the changes that broke a rule (with the
/// first rule each broke). Rules are evaluated on the columns they read, and the winners chosen on
/// the key and order columns only, then gathered: the changes are never copied whole.
pub fn latest_valid(changes: &DataFrame, key: &str, rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)]) -> Result<(DataFrame, DataFrame)> {
    let step = "choosing the latest changes";
    let rule = changes.clone().lazy().select([broken_rule(rules, delete_rules)]).collect().step("checking rules")?;
    let rule = rule.column(RULE).step("checking rules")?.clone();
    let quarantined = if rule.null_count() == rule.len() {
        let mut none = changes.clear();
        none.with_column(rule.clear()).step("checking rules")?;
        none
    } else {
        let mut tagged = changes.clone();
        tagged.with_column(rule.clone()).step("checking rules")?;
        tagged.lazy().filter(col(RULE).is_not_null()).collect().step("checking rules")?
    };
    let mut narrow = vec![changes.column(key).step(step)?.clone(), rule];
    for name in ORDER {
        narrow.push(changes.column(name).step(step)?.clone());
    }
    let narrow = DataFrame::new(changes.height(), narrow).step(step)?;
    let winners = latest(narrow.lazy().with_row_index("_row", None).filter(col(RULE).is_null()), key)
        .select([col("_row")])
        .collect()
        .step(step)?;
    let rows = winners.column("_row").step(step)?.idx().step(step)?.clone();
    let latest = changes.take(&rows).step(step)?;
    Ok((latest, quarantined))
}

fn order_exprs(key: &str) -> Vec<Expr> {
    let mut exprs = vec![col(key)];
    exprs.extend(ORDER.iter().map(|c| col(*c).fill_null(lit(i64::MIN))));
    exprs
}

/// The latest row per `key` by change order.
pub fn latest(frame: LazyFrame, key: &str) -> LazyFrame {
    frame
        .sort_by_exprs(order_exprs(key), SortMultipleOptions::default().with_maintain_order(true))
        .filter(col(key).neq_missing(col(key).shift(lit(-1))))
}

/// `a` comes after `b` in change order (columns `a.*`, `b.*` by prefix).
fn after(a: &str, b: &str) -> Expr {
    let c = |prefix: &str, name: &str| {
        let column = if prefix.is_empty() { name.to_owned() } else { format!("{name}{prefix}") };
        col(column).fill_null(lit(i64::MIN))
    };
    let (ap, au, ae) = (c(a, POSITION), c(a, UPDATED), c(a, EXTRACTED));
    let (bp, bu, be) = (c(b, POSITION), c(b, UPDATED), c(b, EXTRACTED));
    ap.clone().gt(bp.clone()).or(ap.eq(bp).and(au.clone().gt(bu.clone()).or(au.eq(bu).and(ae.gt(be)))))
}

/// Keeps the `changes` that come after what `state` (columns `key` + [`ORDER`]) knows of their key.
pub fn newer_than(changes: LazyFrame, state: LazyFrame, key: &str) -> LazyFrame {
    let known = state.select([
        col(key),
        col(POSITION).alias(format!("{POSITION}_known")),
        col(UPDATED).alias(format!("{UPDATED}_known")),
        col(EXTRACTED).alias(format!("{EXTRACTED}_known")),
    ]);
    changes
        .join(known, [col(key)], [col(key)], JoinArgs::new(JoinType::Left))
        .filter(col(format!("{POSITION}_known")).is_null().or(after("", "_known")))
        .drop(cols([format!("{POSITION}_known"), format!("{UPDATED}_known"), format!("{EXTRACTED}_known")]))
}

/// Rows of `frame` whose `key` is (semi) or is not (anti) in `keys`.
pub fn with_keys(frame: LazyFrame, keys: LazyFrame, key: &str, keep: bool) -> LazyFrame {
    let how = if keep { JoinType::Semi } else { JoinType::Anti };
    frame.join(keys.select([col(key)]), [col(key)], [col(key)], JoinArgs::new(how))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes() -> DataFrame {
        df![
            "id" => [1i64, 1, 1, 2, 2, 3],
            "v" => ["a", "c", "b", "x", "x", "z"],
            POSITION => [10i64, 30, 20, 5, 5, 7],
            UPDATED => [1i64, 3, 2, 1, 1, 1],
            EXTRACTED => [1i64, 1, 1, 1, 2, 1],
            DELETED => [false, false, false, false, false, true],
        ]
        .unwrap()
    }

    #[test]
    fn latest_wins_by_position_then_time() {
        let out = latest(changes().lazy(), "id").sort([("id")], Default::default()).collect().unwrap();
        let v: Vec<_> = out.column("v").unwrap().str().unwrap().iter().flatten().collect();
        assert_eq!(v, ["c", "x", "z"]);
    }

    #[test]
    fn late_older_changes_do_not_win() {
        let state = df!["id" => [1i64, 2], POSITION => [25i64, 5], UPDATED => [9i64, 1], EXTRACTED => [1i64, 1]].unwrap();
        let newer = newer_than(latest(changes().lazy(), "id"), state.lazy(), "id").sort(["id"], Default::default()).collect().unwrap();
        let ids: Vec<_> = newer.column("id").unwrap().i64().unwrap().iter().flatten().collect();
        // id 1: 30 > 25 wins; id 2: same position, later extraction (2 > 1) wins; id 3: unknown.
        assert_eq!(ids, [1, 2, 3]);
        let state = df!["id" => [1i64], POSITION => [30i64], UPDATED => [3i64], EXTRACTED => [1i64]].unwrap();
        let newer = newer_than(latest(changes().lazy(), "id"), state.lazy(), "id").collect().unwrap();
        assert!(!newer.column("id").unwrap().i64().unwrap().iter().flatten().any(|id| id == 1), "an exact duplicate changes nothing");
    }

    #[test]
    fn rules_quarantine_with_names_and_the_latest_valid_change_wins() {
        let rules = [("v is z", col("v").eq(lit("z"))), ("v is c", col("v").eq(lit("c")))];
        let (latest, bad) = latest_valid(&changes(), "id", &rules, &[("never", lit(false))]).unwrap();
        assert_eq!(bad.height(), 1);
        assert_eq!(bad.column(RULE).unwrap().str().unwrap().get(0), Some("v is c"));
        // id 1: "c" (position 30) broke a rule, so "b" (20) is its latest valid change; id 3 is a
        // delete, checked against the delete rules only.
        let v: Vec<_> = latest.column("v").unwrap().str().unwrap().iter().flatten().collect();
        assert_eq!(v, ["b", "x", "z"]);
        assert!(latest.column(RULE).is_err(), "the rule column is dropped");
        let (_, none) = latest_valid(&changes(), "id", &[("never", lit(false))], &[("never", lit(false))]).unwrap();
        assert_eq!(none.height(), 0);
        assert!(none.column(RULE).is_ok(), "an empty quarantine keeps its columns");
    }

    #[test]
    fn snapshot_rows_order_by_binlog_offset() {
        let bronze = df![
            "id" => [1i64, 1],
            "_ab_cdc_cursor" => [None, Some((3i64 << 32) | 900)],
            "_ab_cdc_log_file" => ["mysql-bin.000003", "mysql-bin.000003"],
            "_ab_cdc_log_pos" => [4i64, 900],
            "_airbyte_raw_id" => ["r1", "r2"],
        ]
        .unwrap();
        let prepared = prepare(&bronze, &["id"]).unwrap();
        let pos: Vec<_> = prepared.column(POSITION).unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(pos, [(3 << 32) | 4, (3 << 32) | 900]);
    }
}
