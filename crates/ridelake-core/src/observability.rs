//! Where a job's metrics and lineage events go: the settings a job was given, completed by the
//! environment, so that the connector and the `ridelake` builders resolve them the same way.

use crate::lineage::LineageTarget;
use crate::metrics::MetricsTarget;

/// Where a run's metrics and lineage events go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observability {
    /// Pushgateway and/or metrics file.
    pub metrics: MetricsTarget,
    /// OpenLineage endpoint and/or file.
    pub lineage: LineageTarget,
}

impl Observability {
    /// Targets from the environment (`RIDELAKE_PUSHGATEWAY_URL`, `RIDELAKE_METRICS_FILE`,
    /// `OPENLINEAGE_URL`, `OPENLINEAGE_ENDPOINT`, `OPENLINEAGE_API_KEY`, `OPENLINEAGE_NAMESPACE`,
    /// `RIDELAKE_OPENLINEAGE_FILE`).
    pub fn from_env() -> Self {
        Observability { metrics: MetricsTarget::from_env(), lineage: LineageTarget::from_env() }
    }

    /// These settings, each unset part taken from the environment.
    pub fn or_env(self) -> Self {
        let env = Self::from_env();
        Observability { metrics: self.metrics.or(env.metrics), lineage: self.lineage.or(env.lineage) }
    }
}
