//! Decide: change-data rules on Polars frames, free of I/O so that they can be tested on their own.
//!
//! - Order: [`crate::order`] says which change of a key is the later one. The latest change of a
//!   key wins; an older change arriving late never overwrites a newer one; an exact duplicate
//!   (the same bronze row read again) changes nothing.
//! - Rules: a change that breaks a rule is quarantined with the rule's name and does not touch
//!   silver; silver is the replay of the valid changes only. A change whose change time is text
//!   that is not a time is quarantined too (its place in the order is unknown).

use polars::prelude::*;
use ridelake_core::bronze::{CDC_CURSOR, CDC_DELETED_AT, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT, EXTRACTED_AT, GENERATION_ID};

use crate::error::{PolarsContext, Result};
use crate::order::{self, EPOCH, EpochState, GENERATION, INGEST_ROW, INGEST_VERSION, ORDER, POSITION, UPDATED};

/// The bronze columns [`prepare`] reads besides the stream's own fields (those a table lacks are
/// treated as null). Not `_airbyte_raw_id`, the widest: a change is traced back to its bronze row
/// by [`INGEST_VERSION`] and [`INGEST_ROW`].
pub const BRONZE_CDC_COLUMNS: [&str; 7] = [EXTRACTED_AT, GENERATION_ID, CDC_CURSOR, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT, CDC_DELETED_AT];

/// Extraction time column (microseconds since the epoch); informative, not part of the order.
pub const EXTRACTED: &str = "_cdc_extracted_at";
/// Whether the change is a delete.
pub const DELETED: &str = "_cdc_deleted";
/// Name of the rule a quarantined change broke.
pub const RULE: &str = "rule";
/// Rule broken by a change whose `_ab_cdc_updated_at` is text but not a time.
pub const UNREADABLE_TIME: &str = "_ab_cdc_updated_at is not a time";
/// Internal column: a problem with the change's order columns (null when readable).
pub(crate) const ORDER_PROBLEM: &str = "_cdc_order_problem";

const UTC_MICROS: DataType = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));

fn column<'a>(df: &'a DataFrame, name: &str) -> Option<&'a Column> {
    df.column(name).ok()
}

fn int64(df: &DataFrame, name: &str) -> Result<Option<Int64Chunked>> {
    let Some(column) = column(df, name) else { return Ok(None) };
    let series = column.as_materialized_series().cast(&DataType::Int64).step("reading a CDC column")?;
    Ok(Some(series.i64().step("reading a CDC column")?.clone()))
}

/// A CDC time column as microseconds since the epoch, and whether each non-null value was
/// readable: timestamps are converted, text is parsed ([`order::parse_change_time`]).
fn micros(df: &DataFrame, name: &str) -> Result<(Int64Chunked, BooleanChunked)> {
    let rows = df.height();
    let Some(column) = column(df, name) else {
        return Ok((Int64Chunked::full_null(name.into(), rows), BooleanChunked::full(name.into(), true, rows)));
    };
    let series = column.as_materialized_series();
    if let DataType::String = series.dtype() {
        let text = series.str().step("reading a CDC time")?;
        let mut values = Vec::with_capacity(rows);
        let mut readable = Vec::with_capacity(rows);
        // Rows of a transaction, and of a busy second, share one text: parse each run of equal
        // texts once.
        let mut last: Option<(&str, Option<i64>)> = None;
        for value in text.iter() {
            let parsed = match (value, last) {
                (None, _) => None,
                (Some(v), Some((previous, parsed))) if previous == v => parsed,
                (Some(v), _) => {
                    let parsed = order::parse_change_time(v);
                    last = Some((v, parsed));
                    parsed
                }
            };
            readable.push(value.is_none() || parsed.is_some());
            values.push(parsed);
        }
        return Ok((Int64Chunked::from_iter_options(name.into(), values.into_iter()), BooleanChunked::from_iter_values(name.into(), readable.into_iter())));
    }
    let as_utc = if matches!(series.dtype(), DataType::Datetime(_, _) | DataType::Date) { series.cast(&UTC_MICROS).step("reading a CDC time")? } else { series.clone() };
    let values = as_utc.cast(&DataType::Int64).step("reading a CDC time")?.i64().step("reading a CDC time")?.clone();
    Ok((values, BooleanChunked::full(name.into(), true, rows)))
}

/// `expr` of a data column in silver's form: date-times as microseconds in UTC (a date-time
/// without a zone, such as MySQL's `DATETIME`, is read as UTC wall clock).
fn normalized(df: &DataFrame, name: &str) -> Expr {
    match column(df, name).map(|c| c.dtype().clone()) {
        Some(DataType::Datetime(_, _)) => col(name).cast(UTC_MICROS),
        _ => col(name),
    }
}

/// `fields` of `frame` in silver's form (date-times as microseconds in UTC), beside its other
/// columns.
pub fn normalize(frame: DataFrame, fields: &[&str]) -> Result<DataFrame> {
    let exprs: Vec<Expr> = fields.iter().map(|c| normalized(&frame, c).alias(*c)).collect();
    frame.lazy().with_columns(exprs).collect().step("normalizing fields")
}

/// How [`prepare_with`] gives each row its epoch.
pub enum Epochs<'a> {
    /// Walk the rows in ingest order from this state, which is left where they leave it.
    Walk(&'a mut EpochState),
    /// The rows' epochs, one per row, from a walk made before ([`crate::order::EpochMarks`]):
    /// the rows may then be any subset of the stream.
    Given(Vec<i64>),
}

/// Adds the order columns and the delete flag to bronze rows read in ingest order (with
/// [`INGEST_VERSION`] and [`INGEST_ROW`], which also link a change back to its bronze row), and
/// keeps `keep` columns and `deleted_at`. `epochs` is where the epoch count stood before
/// these rows; it is left where it stands after them.
pub fn prepare(bronze: &DataFrame, keep: &[&str], epochs: &mut EpochState) -> Result<DataFrame> {
    prepare_with(bronze, keep, Epochs::Walk(epochs))
}

/// The source positions of `bronze`'s rows, in its order (`None` for a row with none).
fn positions(bronze: &DataFrame) -> Result<Vec<Option<(order::Scale, i64)>>> {
    let cursor = int64(bronze, CDC_CURSOR)?;
    let log_pos = int64(bronze, CDC_LOG_POS)?;
    let log_file = match column(bronze, CDC_LOG_FILE) {
        Some(c) => Some(c.as_materialized_series().cast(&DataType::String).step("reading _ab_cdc_log_file")?),
        None => None,
    };
    let log_file = match &log_file {
        Some(s) => Some(s.str().step("reading _ab_cdc_log_file")?),
        None => None,
    };
    let mut cursors = cursor.as_ref().map(|c| c.iter());
    let mut log_positions = log_pos.as_ref().map(|p| p.iter());
    let mut files = log_file.map(|f| f.iter());
    Ok((0..bronze.height())
        .map(|_| {
            let cursor = cursors.as_mut().and_then(Iterator::next).flatten();
            let pos = log_positions.as_mut().and_then(Iterator::next).flatten();
            let file = files.as_mut().and_then(Iterator::next).flatten();
            order::source_position(cursor, file, pos)
        })
        .collect())
}

/// Walks one bronze file's rows (read in ingest order; the CDC order columns suffice) into
/// `marks`, as [`prepare`] would walk them.
pub fn mark_epochs(bronze: &DataFrame, marks: &mut order::EpochMarks) -> Result<()> {
    let (updated, _) = micros(bronze, CDC_UPDATED_AT)?;
    marks.walk_file(positions(bronze)?.into_iter().zip(updated.iter()));
    Ok(())
}

/// [`prepare`], the epochs walked or given ([`Epochs`]).
pub fn prepare_with(bronze: &DataFrame, keep: &[&str], epochs: Epochs<'_>) -> Result<DataFrame> {
    let rows = bronze.height();
    let (updated, updated_ok) = micros(bronze, CDC_UPDATED_AT)?;
    let sources = positions(bronze)?;
    // The epoch of a row depends on the rows before it: a walk goes in ingest order.
    let epoch: Vec<i64> = match epochs {
        Epochs::Walk(state) => sources.iter().zip(updated.iter()).map(|(source, changed_at)| state.assign(*source, changed_at)).collect(),
        Epochs::Given(given) if given.len() == rows => given,
        Epochs::Given(given) => return Err(crate::error::LakehouseError::Task(format!("{} epochs given for {rows} changes", given.len()))),
    };
    let position: Vec<Option<i64>> = sources.iter().map(|source| source.map(|(_, p)| p)).collect();
    drop(sources);
    let (deleted_at, _) = micros(bronze, CDC_DELETED_AT)?;
    let (extracted, _) = micros(bronze, EXTRACTED_AT)?;
    let is_delete = match column(bronze, CDC_DELETED_AT) {
        Some(c) => c.as_materialized_series().is_not_null(),
        None => BooleanChunked::full(DELETED.into(), false, rows),
    };
    let generation = match column(bronze, GENERATION_ID) {
        Some(_) => col(GENERATION_ID).cast(DataType::Int64).fill_null(lit(0i64).cast(DataType::Int64)),
        None => lit(0i64).cast(DataType::Int64),
    };
    let mut exprs: Vec<Expr> = keep.iter().map(|c| normalized(bronze, c).alias(*c)).collect();
    exprs.extend([
        generation.alias(GENERATION),
        Series::new(EPOCH.into(), epoch).lit(),
        Series::new(POSITION.into(), position).lit(),
        updated.into_series().with_name(UPDATED.into()).lit(),
        col(INGEST_VERSION),
        col(INGEST_ROW),
        extracted.into_series().with_name(EXTRACTED.into()).lit(),
        is_delete.into_series().with_name(DELETED.into()).lit(),
        deleted_at.into_series().with_name("deleted_at".into()).lit().cast(UTC_MICROS),
        when(updated_ok.into_series().lit()).then(lit(NULL).cast(DataType::String)).otherwise(lit(UNREADABLE_TIME)).alias(ORDER_PROBLEM),
    ]);
    bronze.clone().lazy().select(exprs).collect().step("preparing changes")
}

/// Whether a change broke any rule (never null). `rules` are `(name, broken)` pairs; deletes are
/// checked against `delete_rules` only; an unreadable order breaks a rule too.
fn breaks_any(rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)]) -> Expr {
    let mut any = col(ORDER_PROBLEM).is_not_null();
    for (_, broken) in rules {
        any = any.or(col(DELETED).not().and(broken.clone()).fill_null(lit(false)));
    }
    for (_, broken) in delete_rules {
        any = any.or(col(DELETED).and(broken.clone()).fill_null(lit(false)));
    }
    any.fill_null(lit(false))
}

/// The name of the first rule a change broke, or null (the same rules as [`breaks_any`]). An
/// unreadable order comes first.
fn broken_rule(rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)]) -> Expr {
    let mut rule: Expr = lit(NULL).cast(DataType::String);
    for (name, broken) in rules.iter().rev() {
        rule = when(col(DELETED).not().and(broken.clone())).then(lit(*name)).otherwise(rule);
    }
    for (name, broken) in delete_rules.iter().rev() {
        rule = when(col(DELETED).and(broken.clone())).then(lit(*name)).otherwise(rule);
    }
    when(col(ORDER_PROBLEM).is_not_null()).then(col(ORDER_PROBLEM)).otherwise(rule).alias(RULE)
}

/// The latest valid change per `key` (sorted by key), and the changes that broke a rule (with the
/// first rule each broke). The rules are checked as one mask over the columns they read; the
/// rule names are spelled out only for the (few) changes that broke one. The winners are chosen
/// on the key and order columns only, then gathered: the changes are never copied whole.
pub fn latest_valid(changes: &DataFrame, key: &str, rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)]) -> Result<(DataFrame, DataFrame)> {
    let step = "choosing the latest changes";
    let broken = changes.clone().lazy().select([breaks_any(rules, delete_rules).alias(RULE)]).collect().step("checking rules")?;
    let broken = broken.column(RULE).step("checking rules")?.as_materialized_series().bool().step("checking rules")?.clone();
    let quarantined = changes
        .filter(&broken)
        .step("checking rules")?
        .lazy()
        .with_column(broken_rule(rules, delete_rules))
        .drop(cols([ORDER_PROBLEM]))
        .collect()
        .step("checking rules")?;
    let mut changes = changes.clone();
    let _ = changes.drop_in_place(ORDER_PROBLEM);
    let int64 = |name: &str| -> Result<Int64Chunked> {
        Ok(changes.column(name).step(step)?.as_materialized_series().cast(&DataType::Int64).step(step)?.i64().step(step)?.clone())
    };
    let order_columns = [int64(ORDER[0])?, int64(ORDER[1])?, int64(ORDER[2])?, int64(ORDER[3])?, int64(ORDER[4])?, int64(ORDER[5])?];
    let valid = !&broken;
    // (a text key is hashed as it is; any other kind as an integer)
    let keys = changes.column(key).step(step)?.as_materialized_series();
    let rows = if crate::keys::is_text(keys.dtype()) {
        order::latest_rows(keys.str().step(step)?.iter(), &order_columns.each_ref(), &valid)
    } else {
        order::latest_rows(int64(key)?.iter(), &order_columns.each_ref(), &valid)
    };
    let latest = changes.take(&IdxCa::from_vec("rows".into(), rows)).step(step)?;
    Ok((latest, quarantined))
}

/// Keeps the `changes` that come after what `state` (columns `key` + [`ORDER`]) knows of their key.
pub fn newer_than(changes: LazyFrame, state: LazyFrame, key: &str) -> LazyFrame {
    let mut known: Vec<String> = ORDER.iter().map(|c| format!("{c}_known")).collect();
    let mut renamed = vec![col(key), lit(true).alias(KNOWN)];
    renamed.extend(ORDER.iter().zip(&known).map(|(c, k)| col(*c).alias(k.as_str())));
    known.push(KNOWN.to_owned());
    changes
        .join(state.select(renamed), [col(key)], [col(key)], JoinArgs::new(JoinType::Left))
        .filter(col(KNOWN).is_null().or(order::after("", "_known")))
        .drop(cols(known))
}

/// Internal column of [`newer_than`]: the key is known.
const KNOWN: &str = "_cdc_key_known";

/// Rows of `frame` whose `key` is (semi) or is not (anti) in `keys`.
pub fn with_keys(frame: LazyFrame, keys: LazyFrame, key: &str, keep: bool) -> LazyFrame {
    let how = if keep { JoinType::Semi } else { JoinType::Anti };
    frame.join(keys.select([col(key)]), [col(key)], [col(key)], JoinArgs::new(how))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::INGEST_VERSION;

    /// Changes with their order columns: (id, v, position, updated, version, row).
    fn changes() -> DataFrame {
        df![
            "id" => [1i64, 1, 1, 2, 2, 3],
            "v" => ["a", "c", "b", "x", "x", "z"],
            GENERATION => [0i64; 6],
            EPOCH => [1i64; 6],
            POSITION => [10i64, 30, 20, 5, 5, 7],
            UPDATED => [1i64, 3, 2, 1, 1, 1],
            INGEST_VERSION => [1i64, 1, 1, 1, 2, 1],
            INGEST_ROW => [0i64, 1, 2, 3, 0, 4],
            DELETED => [false, false, false, false, false, true],
            ORDER_PROBLEM => [None::<&str>, None, None, None, None, None],
        ]
        .unwrap()
    }

    fn state(rows: &[(i64, i64, i64, i64, i64)]) -> DataFrame {
        df![
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            GENERATION => vec![0i64; rows.len()],
            EPOCH => vec![1i64; rows.len()],
            POSITION => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            UPDATED => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            INGEST_VERSION => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            INGEST_ROW => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ]
        .unwrap()
    }

    #[test]
    fn late_older_changes_and_duplicates_do_not_win() {
        let (latest, _) = latest_valid(&changes(), "id", &[], &[]).unwrap();
        // id 1: position 30 > 25 wins; id 2: known as of version 1 row 3, the version 2 copy is
        // later in ingest order; id 3: unknown.
        let newer = newer_than(latest.clone().lazy(), state(&[(1, 25, 9, 0, 0), (2, 5, 1, 1, 3)]).lazy(), "id").sort(["id"], Default::default()).collect().unwrap();
        let ids: Vec<_> = newer.column("id").unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(ids, [1, 2, 3]);
        let newer = newer_than(latest.lazy(), state(&[(1, 30, 3, 1, 1), (2, 5, 1, 2, 0)]).lazy(), "id").collect().unwrap();
        let ids: Vec<_> = newer.column("id").unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(ids, [3], "the same changes read again change nothing");
        assert!(newer.column("_cdc_position_known").is_err(), "helper columns are dropped");
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

    fn bronze(updated: &[Option<&str>], cursor: &[Option<i64>]) -> DataFrame {
        let n = updated.len() as i64;
        df![
            "id" => vec![1i64; updated.len()],
            CDC_CURSOR => cursor.to_vec(),
            CDC_LOG_FILE => vec!["mysql-bin.000003"; updated.len()],
            CDC_LOG_POS => (0..n).map(|i| 4 + i).collect::<Vec<_>>(),
            CDC_UPDATED_AT => updated.to_vec(),
            CDC_DELETED_AT => vec![None::<&str>; updated.len()],
            INGEST_VERSION => vec![1i64; updated.len()],
            INGEST_ROW => (0..n).collect::<Vec<_>>(),
        ]
        .unwrap()
    }

    #[test]
    fn text_change_times_are_parsed_and_unreadable_ones_quarantined() {
        let rows = bronze(&[Some("2024-08-03T05:53:50Z"), Some("not a time"), None], &[None, None, None]);
        let mut epochs = EpochState::default();
        let prepared = prepare(&rows, &["id"], &mut epochs).unwrap();
        let updated: Vec<Option<i64>> = prepared.column(UPDATED).unwrap().i64().unwrap().iter().collect();
        assert_eq!(updated, [Some(1_722_664_430_000_000), None, None]);
        let (_, bad) = latest_valid(&prepared, "id", &[], &[]).unwrap();
        assert_eq!(bad.column(RULE).unwrap().str().unwrap().iter().collect::<Vec<_>>(), [Some(UNREADABLE_TIME)]);
        let pos: Vec<_> = prepared.column(POSITION).unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(pos, [(3 << 32) | 4, (3 << 32) | 5, (3 << 32) | 6], "snapshot rows order by binlog offset");
    }

    #[test]
    fn epochs_continue_from_the_state_they_are_given() {
        let java = 1_700_000_000i64 * 100_000_000;
        let rows = bronze(&[None, None], &[Some(java + 1), Some(java + 2)]);
        let mut epochs = EpochState::default();
        prepare(&rows, &["id"], &mut epochs).unwrap();
        let upgraded = bronze(&[None, None], &[Some((3 << 32) | 10), None]);
        let prepared = prepare(&upgraded, &["id"], &mut epochs).unwrap();
        let epoch: Vec<_> = prepared.column(EPOCH).unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(epoch, [2, 2], "the Kotlin rows after the Java ones start epoch 2");
    }

    #[test]
    fn a_subset_prepared_with_marked_epochs_is_the_walk_over_all_rows_filtered() {
        // Java counters, then the Kotlin upgrade, then a binlog restart; ids alternate.
        let java = 1_700_000_000i64 * 100_000_000;
        let times = ["2024-08-03T05:00:00Z", "2024-08-03T05:00:01Z", "2024-08-03T05:00:02Z", "2024-08-03T05:00:03Z", "2024-08-03T06:00:00Z", "2024-08-03T06:00:01Z"];
        let mut rows = bronze(&times.map(Some), &[Some(java + 1), Some(java + 2), Some((7 << 32) | 10), Some((7 << 32) | 20), Some((1 << 32) | 4), None]);
        rows.with_column(Column::new("id".into(), [1i64, 2, 1, 2, 1, 2])).unwrap();
        let walked = prepare(&rows, &["id"], &mut EpochState::default()).unwrap();
        let mut marks = order::EpochMarks::default();
        mark_epochs(&rows, &mut marks).unwrap();
        for id in [1i64, 2] {
            let keep = rows.column("id").unwrap().i64().unwrap().equal(id);
            let ours = rows.filter(&keep).unwrap();
            let given: Vec<i64> = (0..rows.height() as u64).filter(|&r| r % 2 == (id as u64 - 1)).map(|r| marks.epoch_at(0, r)).collect();
            let prepared = prepare_with(&ours, &["id"], Epochs::Given(given)).unwrap();
            assert!(prepared.equals_missing(&walked.filter(&walked.column("id").unwrap().i64().unwrap().equal(id)).unwrap()), "id {id}");
        }
        let epochs: Vec<_> = walked.column(EPOCH).unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(epochs, [1, 1, 2, 2, 3, 3], "the rows span three epochs");
        assert!(prepare_with(&rows, &["id"], Epochs::Given(vec![1])).is_err(), "one epoch per row");
    }
}
