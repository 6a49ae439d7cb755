//! Decide: which changes keep the rules, and what happens to those that break one.
//!
//! Two kinds of rules apply to a table's changes:
//! - silver's own (a key, the columns silver cannot do without, the statuses and roles it knows:
//!   [`crate::silver`]), which set a breaking change aside in quarantine;
//! - the model file's (`[[rides.rules]]`: a SQL condition on silver's columns, after the mapping,
//!   with an action). A change breaks a rule when its condition is false; null (unknown) passes,
//!   as in a SQL `CHECK` constraint. Deletes are not checked (they carry the key only).
//!
//! What a model rule's action does with a breaking change:
//! - `quarantine` (the default): the change is set aside in silver's quarantine with the rule's
//!   name, and silver keeps the key's latest change that breaks no rule, as for silver's rules;
//! - `drop`: the same, without a quarantine row (the report counts them, `dropped`);
//! - `warn`: the rule sets nothing aside; the report counts the changes that broke it, per rule
//!   (`warnings`);
//! - `fail`: the run stops before committing anything, naming the rule, its model line and how
//!   many changes of the batch broke it (never their values).
//!
//! Among the rules that set changes aside, a change counts for the first it breaks: silver's,
//! then the model's in file order. Warn and fail rules look at every change that is not a delete,
//! whatever else it breaks. Each model rule is evaluated once per batch, into a boolean column
//! that travels with the changes while the latest are chosen.
//! Everything here is pure: frames in, frames and counts out.

use polars::prelude::*;

use crate::cdc::{self, DELETED, RULE};
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::model::{Rule, RuleAction, StreamMap};

/// What choosing a table's latest changes under its rules gave.
#[derive(Debug)]
pub(crate) struct Chosen {
    /// The latest change per key that breaks no rule setting changes aside.
    pub(crate) latest: DataFrame,
    /// The changes for silver's quarantine (those that broke a rule whose action is quarantine),
    /// with the rule they broke first.
    pub(crate) quarantined: DataFrame,
    /// Changes set aside by a rule whose action is drop.
    pub(crate) dropped: u64,
    /// Per warn rule (`<table>: <rule>`), the changes that broke it, when any did.
    pub(crate) warned: Vec<(String, u64)>,
}

/// The condition of `rule`, as a Polars expression (the model checked that it parses).
fn condition(rule: &Rule) -> Result<Expr> {
    polars::sql::sql_expr(&rule.check).map_err(|e| rule_problem(rule, &format!("is not a condition ridelake can read ({e})")))
}

/// A problem with a model rule, at its line. (Never with the text of a Polars error on data: a
/// failed cast would quote the rows' values.)
fn rule_problem(rule: &Rule, what: &str) -> LakehouseError {
    LakehouseError::Model { origin: rule.origin.clone(), problems: vec![format!("line {}: rule `{}` {what}", rule.line, rule.name)] }
}

/// The internal column holding model rule `k`'s breaking changes.
fn mask_name(k: usize) -> String {
    format!("_cdc_model_rule_{k}")
}

/// Each model rule's breaking changes of `changes` (true where the change is not a delete and
/// the condition is false), as boolean columns [`mask_name`]`(k)`, one per rule in file order.
/// A rule whose condition is not true/false on these columns' types (`status > 3`,
/// `duration_s`), or cannot be evaluated on these rows (a strict `CAST` of text that is not a
/// number), is an error naming its line and never the values.
fn masks(changes: &DataFrame, map: &StreamMap) -> Result<Vec<Column>> {
    let empty = changes.clear();
    let mut out = Vec::with_capacity(map.rules.len());
    for (k, rule) in map.rules.iter().enumerate() {
        let typed = empty.clone().lazy().select([condition(rule)?]).collect().map_err(|_| rule_problem(rule, &format!("cannot be checked on silver {}'s column types", map.table)))?;
        let dtype = typed.columns().first().map(|c| c.dtype().clone()).unwrap_or(DataType::Null);
        if !matches!(dtype, DataType::Boolean | DataType::Null) {
            return Err(rule_problem(rule, &format!("gives {dtype}, not true or false: write a comparison (such as `duration_s > 0`)")));
        }
        let broken = col(DELETED).not().and(condition(rule)?.not()).fill_null(lit(false)).alias(mask_name(k));
        let mask = changes
            .clone()
            .lazy()
            .select([broken])
            .collect()
            .map_err(|_| rule_problem(rule, &format!("cannot be evaluated on these silver {} changes (a CAST of a value that does not convert? TRY_CAST gives null instead)", map.table)))?;
        out.push(mask.columns().first().cloned().ok_or_else(|| rule_problem(rule, "gave no result"))?);
    }
    Ok(out)
}

/// Chooses the latest change per `key` of `changes` (prepared, [`cdc::prepare`]) under silver's
/// `rules` and `delete_rules` and the model's rules of `map` (module documentation). Fails when a
/// fail rule is broken, or when a rule cannot be checked on these columns, naming its model line;
/// nothing is committed by then.
pub(crate) fn choose(changes: &DataFrame, key: &str, rules: &[(&str, Expr)], delete_rules: &[(&str, Expr)], map: &StreamMap) -> Result<Chosen> {
    if map.rules.is_empty() {
        let (latest, quarantined) = cdc::latest_valid(changes, key, rules, delete_rules)?;
        return Ok(Chosen { latest, quarantined, dropped: 0, warned: Vec::new() });
    }
    let step = "checking the model's rules";
    // Each rule evaluated once; the masks travel with the changes while the latest are chosen.
    let masks = masks(changes, map)?;
    let count = |k: usize| -> Result<u64> { Ok(masks[k].as_materialized_series().bool().step(step)?.sum().unwrap_or(0) as u64) };
    // warn and fail rules: counted on every change that is not a delete; the changes are kept.
    let mut warned = Vec::new();
    for (k, rule) in map.rules.iter().enumerate() {
        let broke = match rule.action {
            RuleAction::Warn | RuleAction::Fail => count(k)?,
            _ => continue,
        };
        match rule.action {
            _ if broke == 0 => {}
            RuleAction::Fail => {
                return Err(LakehouseError::RuleBroken { origin: rule.origin.clone(), line: rule.line, table: map.table.to_owned(), rule: rule.name.clone(), changes: broke });
            }
            _ => warned.push((format!("{}: {}", map.table, rule.name), broke)),
        }
    }
    // quarantine and drop rules set changes aside, after silver's own.
    let mut with_masks = changes.clone();
    for mask in &masks {
        with_masks.with_column(mask.clone()).step(step)?;
    }
    let mut all: Vec<(&str, Expr)> = rules.to_vec();
    for (k, rule) in map.rules.iter().enumerate() {
        if rule.action.changes_rows() {
            all.push((rule.name.as_str(), col(mask_name(k))));
        }
    }
    let (latest, aside) = cdc::latest_valid(&with_masks, key, &all, delete_rules)?;
    drop(with_masks);
    let names: Vec<String> = (0..masks.len()).map(mask_name).collect();
    let latest = latest.drop_many(names.iter().map(String::as_str));
    // A change set aside by a drop rule (the first it broke: silver's rule names are reserved,
    // so the name tells) leaves no quarantine row.
    let dropping: Vec<&str> = map.rules.iter().filter(|r| r.action == RuleAction::Drop).map(|r| r.name.as_str()).collect();
    let aside = aside.drop_many(names.iter().map(String::as_str));
    if dropping.is_empty() || aside.height() == 0 {
        return Ok(Chosen { latest, quarantined: aside, dropped: 0, warned });
    }
    let dropped_here = col(RULE).is_in(lit(Series::new("rules".into(), dropping)).implode(false), false).fill_null(lit(false));
    let quarantined = aside.clone().lazy().filter(dropped_here.not()).collect().step(step)?;
    let dropped = (aside.height() - quarantined.height()) as u64;
    Ok(Chosen { latest, quarantined, dropped, warned })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::order::{EPOCH, GENERATION, INGEST_ROW, INGEST_VERSION, POSITION, UPDATED};

    const MODEL: &str = r#"
version = 1
[[rides.rules]]
name = "distance is not negative"
check = "distance_km >= 0"
[[rides.rules]]
name = "fare is plausible"
check = "fare_amount < 500"
action = "drop"
[[rides.rules]]
check = "duration_s < 3600"
action = "warn"
[[rides.rules]]
name = "no test customer"
check = "customer_id <> 999"
action = "fail"
"#;

    /// Prepared changes of rides 1 to 4: (id, distance, fare, duration, customer, deleted).
    fn changes(rows: &[(i64, Option<f64>, f64, i64, i64, bool)]) -> DataFrame {
        let n = rows.len();
        let mut frame = df![
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "distance_km" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "fare_amount" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "duration_s" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "customer_id" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            DELETED => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            GENERATION => vec![0i64; n],
            EPOCH => vec![1i64; n],
            POSITION => (0..n as i64).collect::<Vec<_>>(),
            UPDATED => (0..n as i64).collect::<Vec<_>>(),
            INGEST_VERSION => vec![1i64; n],
            INGEST_ROW => (0..n as i64).collect::<Vec<_>>(),
        ]
        .expect("frame");
        frame.with_column(Column::full_null(cdc::ORDER_PROBLEM.into(), n, &DataType::String)).expect("order problem column");
        frame
    }

    fn ids(frame: &DataFrame) -> Vec<i64> {
        frame.column("id").expect("id").i64().expect("i64").iter().flatten().collect()
    }

    #[test]
    fn each_action_does_what_it_says() {
        let model = Model::parse(MODEL, "rules.toml").expect("model");
        let rows = changes(&[
            (1, Some(5.0), 10.0, 600, 1, false),
            (1, Some(-1.0), 12.0, 600, 1, false), // quarantined: ride 1 keeps its first change
            (2, Some(3.0), 900.0, 600, 1, false), // dropped: ride 2 has no valid change
            (3, None, 10.0, 7200, 1, false),      // null distance passes; too long: a warning, applied
            (4, Some(2.0), 10.0, 60, 1, false),
            (4, Some(-5.0), 900.0, 99_999, 1, true), // a delete: not checked, applied
        ]);
        let chosen = choose(&rows, "id", &[], &[], &model.rides).expect("chosen");
        assert_eq!(ids(&chosen.latest), [1, 3, 4]);
        let latest_distance: Vec<Option<f64>> = chosen.latest.column("distance_km").expect("d").f64().expect("f64").iter().collect();
        assert_eq!(latest_distance, [Some(5.0), None, Some(-5.0)]);
        assert_eq!(ids(&chosen.quarantined), [1]);
        assert_eq!(chosen.quarantined.column(RULE).expect("rule").str().expect("str").get(0), Some("distance is not negative"));
        assert_eq!(chosen.dropped, 1);
        assert_eq!(chosen.warned, [("rides: duration_s < 3600".to_owned(), 1)]);
    }

    #[test]
    fn a_broken_fail_rule_stops_with_its_line_and_count_only() {
        let model = Model::parse(MODEL, "rules.toml").expect("model");
        let rows = changes(&[(1, Some(5.0), 10.0, 60, 999, false), (2, Some(5.0), 10.0, 60, 999, false), (3, Some(5.0), 10.0, 60, 7, false)]);
        let error = choose(&rows, "id", &[], &[], &model.rides).expect_err("fails");
        let message = error.to_string();
        assert!(matches!(error, LakehouseError::RuleBroken { changes: 2, line: 13, .. }), "{message}");
        assert!(message.contains("rules.toml") && message.contains("no test customer") && message.contains("line 13"), "{message}");
        assert!(!message.contains("999"), "no record value in errors: {message}");
    }

    #[test]
    fn a_rule_that_does_not_fit_the_types_is_named_without_values() {
        let rows = changes(&[(1, Some(5.0), 10.0, 60, 1, false)]);
        for check in ["duration_s", "fare_amount + 1"] {
            let model = Model::parse(&format!("version = 1\n[[rides.rules]]\nname = \"odd\"\ncheck = \"{check}\"\n"), "odd.toml").expect("parses");
            match choose(&rows, "id", &[], &[], &model.rides) {
                Err(LakehouseError::Model { origin, problems }) => {
                    assert_eq!(origin, "odd.toml");
                    assert!(problems[0].starts_with("line 2: rule `odd`") && problems[0].contains("not true or false"), "{problems:?}");
                }
                other => panic!("{check}: expected a model problem, got {other:?}"),
            }
        }
        // A strict cast of text that is not a number fails on the rows: the error names the rule,
        // never the value.
        let mut texts = rows.clone();
        texts.with_column(Column::new("currency".into(), ["secret-value"])).expect("currency");
        let model = Model::parse("version = 1\n[[rides.rules]]\nname = \"numeric\"\ncheck = \"CAST(currency AS BIGINT) > 0\"\n", "cast.toml").expect("parses");
        let message = choose(&texts, "id", &[], &[], &model.rides).expect_err("the cast fails").to_string();
        assert!(message.contains("numeric") && message.contains("line 2") && !message.contains("secret-value"), "{message}");
    }
}
