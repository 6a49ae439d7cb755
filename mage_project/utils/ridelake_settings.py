"""The one place where the pipeline's blocks find the lake.

Values come from the pipeline's runtime variables when given (`mage run ... --runtime-vars
'{"lake": "s3://lake/prod"}'`), else from the `ridelake` profile of io_config.yaml, which reads
environment variables only. Blocks call `settings(kwargs)` and pass the result to ridelake.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LakeSettings:
    lake: str
    namespace: str
    storage_options: dict[str, str] | None
    export_dir: str
    postgres_dsn: str | None
    postgres_schema: str
    observability: dict[str, str]
    model: str | None = None  # model file mapping the source schema onto silver's (None: default)
    rebuild: bool = False  # rebuild silver from all of bronze (once, after changing the model)
    memory_budget: str | None = None  # memory a silver or gold run may use ("2GiB"); None: RIDELAKE_MEMORY_BUDGET, else half the RAM
    engine: str = "local"  # where the slices of a rebuild or of a large increment run: "local", "ray" (RAY_ADDRESS names the cluster) or "spark" (the active SparkSession)

    def ridelake_args(self) -> dict:
        """Keyword arguments every ridelake call takes besides the lake."""
        return {"namespace": self.namespace, "storage_options": self.storage_options}

    def build_args(self) -> dict:
        """Keyword arguments of build_silver and build_gold: the above, plus where metrics and
        lineage events go."""
        return {**self.ridelake_args(), **self.observability}

    def silver_args(self) -> dict:
        """Keyword arguments of build_silver: build_args, plus the model, whether to rebuild, the
        memory budget and the engine that runs a sliced run's slices."""
        args = {**self.build_args(), "model": self.model, "rebuild": self.rebuild, "engine": self.engine}
        if self.memory_budget:
            args["memory_budget"] = self.memory_budget
        return args

    def gold_args(self) -> dict:
        """Keyword arguments of build_gold: build_args, plus the model (its cities) and the memory
        budget."""
        args = {**self.build_args(), "model": self.model}
        if self.memory_budget:
            args["memory_budget"] = self.memory_budget
        return args

    def maintenance_args(self, runtime: dict | None = None) -> dict:
        """Keyword arguments of maintain: ridelake_args, the model, where metrics go, and the
        retention settings given as runtime variables."""
        runtime = runtime or {}
        args = {**self.ridelake_args(), "model": self.model}
        if "pushgateway_url" in self.observability:
            args["pushgateway_url"] = self.observability["pushgateway_url"]
        if "metrics_file" in self.observability:
            args["metrics_file"] = self.observability["metrics_file"]
        for key in ("retention_hours", "log_retention_hours", "target_file_mb"):
            if runtime.get(key) not in (None, ""):
                value = float(runtime[key])
                if value < 0:
                    raise ValueError(f"{key} must be 0 or more, not {runtime[key]!r}")
                args[key] = int(value) if key == "target_file_mb" else value
        return args

    def progress_args(self) -> dict:
        """Keyword arguments of bronze_progress."""
        return {**self.ridelake_args(), "model": self.model}


def _profile() -> dict:
    from mage_ai.io.config import ConfigFileLoader

    return ConfigFileLoader(PROJECT / "io_config.yaml", "ridelake").config or {}


def settings(runtime: dict | None = None) -> LakeSettings:
    runtime = runtime or {}
    profile = _profile()
    lake = runtime.get("lake") or profile.get("RIDELAKE_LAKE") or ""
    if not lake:
        raise ValueError("no lake configured: set RIDELAKE_LAKE (a folder or s3://bucket/prefix) "
                         "or pass --runtime-vars '{\"lake\": ...}'")
    options = None
    if lake.startswith("s3://"):
        options = {"AWS_ACCESS_KEY_ID": profile.get("AWS_ACCESS_KEY_ID", ""),
                   "AWS_SECRET_ACCESS_KEY": profile.get("AWS_SECRET_ACCESS_KEY", ""),
                   "AWS_REGION": profile.get("AWS_REGION") or "us-east-1"}
        endpoint = profile.get("AWS_ENDPOINT") or ""
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
            options["AWS_ALLOW_HTTP"] = "true" if endpoint.startswith("http://") else "false"
    export_dir = runtime.get("export_dir") or profile.get("RIDELAKE_EXPORT_DIR") or (
        os.path.join(lake, "exports") if not lake.startswith("s3://") else str(PROJECT / "exports"))
    return LakeSettings(lake=lake, namespace=runtime.get("namespace") or profile.get("RIDELAKE_NAMESPACE") or "ridehail",
                        storage_options=options, export_dir=export_dir,
                        postgres_dsn=profile.get("RIDELAKE_POSTGRES_DSN") or None,
                        postgres_schema=runtime.get("postgres_schema") or profile.get("RIDELAKE_POSTGRES_SCHEMA") or "gold",
                        observability=_observability(profile),
                        model=runtime.get("model") or profile.get("RIDELAKE_MODEL") or None,
                        rebuild=str(runtime.get("rebuild", "")).lower() in ("1", "true", "yes"),
                        memory_budget=str(runtime.get("memory_budget") or profile.get("RIDELAKE_MEMORY_BUDGET") or "") or None,
                        # (ridelake checks the name: an unknown engine is a ConfigError)
                        engine=str(runtime.get("engine") or profile.get("RIDELAKE_ENGINE") or "local").strip().lower())


def _observability(profile: dict) -> dict[str, str]:
    keys = {"pushgateway_url": "RIDELAKE_PUSHGATEWAY_URL", "metrics_file": "RIDELAKE_METRICS_FILE",
            "lineage_url": "OPENLINEAGE_URL", "lineage_file": "RIDELAKE_OPENLINEAGE_FILE"}
    return {arg: profile[key] for arg, key in keys.items() if profile.get(key)}
