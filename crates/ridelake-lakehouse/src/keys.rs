//! Silver's keys: a table's `id` (and a ride's `customer_id` and `driver_id`) holds integers or
//! text, as its source column does (a MySQL `BIGINT`, or a `CHAR(36)` UUID). The model decides
//! which from bronze's schema ([`crate::model::StreamMap::key_type`]); everything that handles
//! key values outside a frame (a file's key range, the keys a run changes, a slice's bounds)
//! holds them as these types, which compare as Polars and Parquet statistics do (text by its
//! UTF-8 bytes). Pure.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{PolarsContext, Result};

/// One key value. (Integers order before text; a table's keys are all of one kind.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// An integer key.
    Int(i64),
    /// A text key.
    Text(String),
}

impl Key {
    /// The key as a Polars literal (to compare a key column with).
    pub fn lit(&self) -> Expr {
        match self {
            Key::Int(v) => lit(*v),
            Key::Text(v) => lit(v.as_str()),
        }
    }

    /// The type a key column is compared in for this key.
    pub fn dtype(&self) -> DataType {
        match self {
            Key::Int(_) => DataType::Int64,
            Key::Text(_) => DataType::String,
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Int(v) => write!(f, "{v}"),
            Key::Text(v) => f.write_str(v),
        }
    }
}

/// Whether `dtype` is a text key's type (any other key type is an integer's).
pub fn is_text(dtype: &DataType) -> bool {
    matches!(dtype, DataType::String)
}

/// A sorted, deduplicated set of key values of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    /// Integer keys, ascending.
    Int(Vec<i64>),
    /// Text keys, ascending by their bytes.
    Text(Vec<String>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Int(Vec::new())
    }
}

impl Keys {
    /// The non-null values of a key column, sorted and deduplicated: text for a text column,
    /// integers for any other. (No keys are `Keys::default()`, whatever the column's type: an
    /// empty set reads back from JSON as that one.)
    pub fn of(column: &Column) -> Result<Keys> {
        let step = "reading keys";
        let series = column.as_materialized_series();
        if series.null_count() == series.len() {
            return Ok(Keys::default());
        }
        if is_text(series.dtype()) {
            let mut keys: Vec<String> = series.str().step(step)?.iter().flatten().map(str::to_owned).collect();
            keys.sort_unstable();
            keys.dedup();
            return Ok(Keys::Text(keys));
        }
        let ints = series.cast(&DataType::Int64).step(step)?;
        let mut keys: Vec<i64> = ints.i64().step(step)?.iter().flatten().collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Keys::Int(keys))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        match self {
            Keys::Int(v) => v.len(),
            Keys::Text(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys as a column `name` (of `dtype` when there are none, whose kind is then unknown).
    pub fn column(&self, name: &str, dtype: &DataType) -> Column {
        match self {
            Keys::Int(v) if v.is_empty() => Column::new_empty(name.into(), dtype),
            Keys::Int(v) => Column::new(name.into(), v.as_slice()),
            Keys::Text(v) => Column::new(name.into(), v.iter().map(String::as_str).collect::<Vec<_>>()),
        }
    }

    /// The keys of all `parts` (of one kind; any may be empty), sorted once.
    pub fn concat(parts: impl IntoIterator<Item = Keys>) -> Keys {
        let (mut ints, mut texts): (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
        for part in parts {
            match part {
                Keys::Int(v) => ints.extend(v),
                Keys::Text(v) => texts.extend(v),
            }
        }
        if texts.is_empty() {
            ints.sort_unstable();
            ints.dedup();
            return Keys::Int(ints);
        }
        // (keys of two kinds cannot come from one table; kept all the same, as text)
        texts.extend(ints.into_iter().map(|k| k.to_string()));
        texts.sort_unstable();
        texts.dedup();
        Keys::Text(texts)
    }

    /// Whether one of the keys lies in `[min, max]` (a file's key range).
    pub fn any_within(&self, range: &KeyRange) -> bool {
        match (self, range) {
            (Keys::Int(keys), KeyRange::Int(min, max)) => {
                let first = keys.partition_point(|k| k < min);
                keys.get(first).is_some_and(|k| k <= max)
            }
            (Keys::Text(keys), KeyRange::Text(min, max)) => {
                let first = keys.partition_point(|k| k.as_str() < min.as_str());
                keys.get(first).is_some_and(|k| k.as_str() <= max.as_str())
            }
            // (keys of another kind than the file's: the range proves nothing)
            _ => !self.is_empty(),
        }
    }
}

/// The least and greatest key of a Parquet file, from its Delta statistics: every key of the
/// file lies within (a text bound may be a truncated prefix, or past the greatest key, and is
/// still a bound).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRange {
    /// Integer keys from `.0` to `.1`, both included.
    Int(i64, i64),
    /// Text keys from `.0` to `.1`, both included.
    Text(String, String),
}

impl KeyRange {
    /// The range of column `column` in a file's Delta statistics JSON, when it records one.
    pub fn from_stats(stats: &serde_json::Value, column: &str) -> Option<KeyRange> {
        let (min, max) = (stats.get("minValues")?.get(column)?, stats.get("maxValues")?.get(column)?);
        match (min, max) {
            (serde_json::Value::String(min), serde_json::Value::String(max)) => Some(KeyRange::Text(min.clone(), max.clone())),
            _ => Some(KeyRange::Int(min.as_i64()?, max.as_i64()?)),
        }
    }

    /// Whether a key of `[from, to)` (open where `None`) may lie in this range.
    pub fn meets(&self, from: Option<&Key>, to: Option<&Key>) -> bool {
        let (min, max) = match self {
            KeyRange::Int(a, b) => (Key::Int(*a), Key::Int(*b)),
            KeyRange::Text(a, b) => (Key::Text(a.clone()), Key::Text(b.clone())),
        };
        let kind = |k: &Key| std::mem::discriminant(k) == std::mem::discriminant(&min);
        // (bounds of another kind than the file's keys prove nothing)
        from.is_none_or(|from| !kind(from) || max >= *from) && to.is_none_or(|to| !kind(to) || min < *to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_column_are_sorted_deduplicated_and_keep_their_kind() {
        let ints = Column::new("id".into(), [Some(3i32), None, Some(1), Some(3)]);
        assert_eq!(Keys::of(&ints).unwrap(), Keys::Int(vec![1, 3]));
        let texts = Column::new("id".into(), [Some("b"), Some("B"), None, Some("b"), Some("é")]);
        assert_eq!(Keys::of(&texts).unwrap(), Keys::Text(vec!["B".into(), "b".into(), "é".into()]));
        let json = serde_json::to_string(&Keys::Text(vec!["7".into()])).unwrap();
        assert_eq!(serde_json::from_str::<Keys>(&json).unwrap(), Keys::Text(vec!["7".into()]), "text that looks like a number stays text");
        assert_eq!(serde_json::from_str::<Keys>("[7]").unwrap(), Keys::Int(vec![7]));
        let none = Keys::of(&Column::new("id".into(), Vec::<Option<&str>>::new())).unwrap();
        assert_eq!(serde_json::from_str::<Keys>(&serde_json::to_string(&none).unwrap()).unwrap(), none, "no keys read back as themselves");
        assert_eq!(Keys::of(&Column::new("id".into(), [None::<&str>])).unwrap(), Keys::default());
        assert_eq!(Keys::concat([Keys::Int(vec![1, 5]), Keys::Int(vec![2, 5])]), Keys::Int(vec![1, 2, 5]));
        assert_eq!(Keys::concat([Keys::default(), Keys::Text(vec!["b".into(), "a".into()])]), Keys::Text(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn a_range_rules_out_keys_outside_it() {
        let ints = Keys::Int(vec![2, 40]);
        assert!(ints.any_within(&KeyRange::Int(1, 3)) && ints.any_within(&KeyRange::Int(40, 50)));
        assert!(!ints.any_within(&KeyRange::Int(4, 9)) && !ints.any_within(&KeyRange::Int(41, 99)));
        let texts = Keys::Text(vec!["a-7".into(), "f0".into()]);
        assert!(texts.any_within(&KeyRange::Text("a".into(), "b".into())));
        assert!(!texts.any_within(&KeyRange::Text("b".into(), "e".into())), "between two keys");
        assert!(!texts.any_within(&KeyRange::Text("f00".into(), "z".into())), "above every key (byte order)");
        assert!(!Keys::Text(vec![]).any_within(&KeyRange::Text("a".into(), "z".into())));
        let stats = serde_json::json!({"minValues": {"id": "a", "n": 1}, "maxValues": {"id": "q", "n": 4}});
        assert_eq!(KeyRange::from_stats(&stats, "id"), Some(KeyRange::Text("a".into(), "q".into())));
        assert_eq!(KeyRange::from_stats(&stats, "n"), Some(KeyRange::Int(1, 4)));
        assert_eq!(KeyRange::from_stats(&stats, "other"), None);
    }

    #[test]
    fn a_range_meets_a_slice_when_they_overlap() {
        let (b, d) = (Key::Text("b".into()), Key::Text("d".into()));
        assert!(KeyRange::Text("a".into(), "b".into()).meets(Some(&b), Some(&d)), "from is included");
        assert!(!KeyRange::Text("d".into(), "e".into()).meets(Some(&b), Some(&d)), "to is excluded");
        assert!(!KeyRange::Text("a".into(), "az".into()).meets(Some(&b), None));
        assert!(KeyRange::Int(5, 9).meets(None, Some(&Key::Int(6))) && !KeyRange::Int(5, 9).meets(Some(&Key::Int(10)), None));
    }
}
