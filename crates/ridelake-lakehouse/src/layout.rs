//! Where each layer's tables live under one lake root: `<root>/bronze/<namespace>/<stream>`
//! (written by destination-delta-lake with `<root>/bronze` as its base), `<root>/silver/<table>`
//! and `<root>/gold/<table>`.

use std::collections::HashMap;
use std::sync::Arc;

use ridelake_core::bronze::safe_segment;
use ridelake_core::storage::StorageConfig;
use url::Url;

use crate::error::Result;
use crate::model::Model;

/// The comment of column `column` of the silver or gold table named `table` (`silver_rides`,
/// `gold_driver_stats`, …), when we know what it means.
pub fn column_comment(table: &str, column: &str) -> Option<&'static str> {
    if table.starts_with("gold_") { crate::gold::column_doc(column) } else { crate::silver::column_doc(table, column) }
}

/// The lake: a root location, the namespace of the bronze streams, and the model that maps them
/// onto silver.
#[derive(Debug, Clone)]
pub struct LakeLayout {
    /// Root of the lake (local folder or bucket + prefix).
    pub storage: StorageConfig,
    /// Airbyte namespace of the source streams (the MySQL database).
    pub namespace: String,
    /// Which bronze streams and columns fill silver ([`crate::model`]); the default model reads
    /// streams `users` and `rides` as they are.
    pub model: Arc<Model>,
}

impl LakeLayout {
    /// A layout with the default model; checks the storage settings.
    pub fn new(storage: StorageConfig, namespace: impl Into<String>) -> Result<Self> {
        Ok(LakeLayout { storage: storage.validated()?, namespace: namespace.into(), model: Arc::new(Model::default()) })
    }

    /// The same lake, read through `model`.
    pub fn with_model(mut self, model: Model) -> Self {
        self.model = Arc::new(model);
        self
    }

    /// A bronze table.
    pub fn bronze(&self, stream: &str) -> Result<Url> {
        let ns = safe_segment("namespace", &self.namespace)?;
        let stream = safe_segment("stream", stream)?;
        Ok(self.storage.table_url(&["bronze", &ns, &stream])?)
    }

    /// A silver table, by the name the code knows it by (`users`, `rides`, `rides_pending`, …):
    /// its folder is the one the model names ([`Model::silver_table`]).
    pub fn silver(&self, table: &str) -> Result<Url> {
        Ok(self.storage.table_url(&["silver", &self.model.silver_table(table)])?)
    }

    /// A gold table.
    pub fn gold(&self, table: &str) -> Result<Url> {
        Ok(self.storage.table_url(&["gold", table])?)
    }

    /// delta-rs storage options.
    pub fn storage_options(&self) -> HashMap<String, String> {
        self.storage.storage_options()
    }
}
