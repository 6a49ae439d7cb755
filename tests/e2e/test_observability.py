"""Observability against real components: Prometheus and the Pushgateway (Debian packages),
promtool, openlineage-python, and OpenMetadata's own models.

- The main job runs with pushing on; Prometheus scrapes the Pushgateway and evaluates our rule
  file. Every PromQL expression of the dashboard and of the rule file then returns data from
  that Prometheus, and every metric an alert reads exists.
- `promtool` accepts the Prometheus config, the rules (and their unit tests) and the text our
  jobs write.
- A failed sync and a failed silver build report the error type and keep the last success.
- Every OpenLineage event we write or POST is rebuilt with openlineage-python's classes and
  serialises back to exactly the same document; row counts and versions match the tables.
- Every Delta table we write carries a name and a description; the OpenMetadata ingestion config
  validates against OpenMetadata's generated models.
"""
from __future__ import annotations

import http.server
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, VENVS, free_ports, generate, local_config, read_delta, run_dest

MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus/rules/ridelake.rules.yml"
DASHBOARD = MONITORING / "grafana/dashboards/ridelake.json"
JOBS = ["ridelake_bronze", "ridelake_silver", "ridelake_gold"]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Prometheus:
    def __init__(self, url: str, pushgateway: str):
        self.url, self.pushgateway = url, pushgateway

    def query(self, expr: str) -> list[dict]:
        body = urllib.parse.urlencode({"query": expr}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query", data=body, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def wait_for(self, expr: str, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = time.time() + timeout
        while True:
            result = self.query(expr)
            if len(result) >= count:
                return result
            assert time.time() < deadline, f"{expr}: {len(result)} series after {timeout} s"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A Pushgateway and a Prometheus that scrapes it every second with our rule file."""
    for binary in ("prometheus", "prometheus-pushgateway", "promtool"):
        assert shutil.which(binary), f"{binary} is missing: run scripts/setup-test-env.sh"
    work = tmp_path_factory.mktemp("prometheus")
    pg_port, prom_port = free_ports(2)
    config = (MONITORING / "prometheus/prometheus.yml").read_text()
    config = (config.replace("pushgateway:9091", f"127.0.0.1:{pg_port}")
              .replace("rules/ridelake.rules.yml", str(RULES))
              .replace("scrape_interval: 15s", "scrape_interval: 1s")
              .replace("evaluation_interval: 15s", "evaluation_interval: 1s"))
    (work / "prometheus.yml").write_text(config)
    logs = open(work / "servers.log", "wb")
    servers = [
        subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{pg_port}"], stdout=logs, stderr=logs),
        subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=logs, stderr=logs),
    ]
    try:
        # Endpoints only the intended server has: a Pushgateway answers /-/ready too, so a port
        # another server took would otherwise pass for Prometheus.
        wait_http(f"http://127.0.0.1:{pg_port}/api/v1/status")
        wait_http(f"http://127.0.0.1:{prom_port}/api/v1/status/buildinfo")
        for server in servers:
            assert server.poll() is None, f"{server.args[0]} exited: " + (work / "servers.log").read_text()[-3000:]
        yield Prometheus(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{pg_port}")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)
        logs.close()


@pytest.fixture(scope="module")
def observed_lake(prometheus, tmp_path_factory):
    """The main job, pushing metrics and writing lineage events; then Prometheus has them all."""
    work = tmp_path_factory.mktemp("observed")
    lake, events = work / "lake", work / "lineage.jsonl"
    env = {**os.environ, "RIDELAKE_PUSHGATEWAY_URL": prometheus.pushgateway, "RIDELAKE_OPENLINEAGE_FILE": str(events)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts/run_pipeline.py"), "--lake", str(lake), "--records", "20000",
                           "--seed", "11"], capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not re.search(r"WARN|metrics: |lineage: ", proc.stderr), "metrics and events were sent: " + proc.stderr[-3000:]
    prometheus.wait_for('ridelake_run_success == 1', count=3)
    # The recording rules have been evaluated on the scraped data.
    prometheus.wait_for("ridelake:freshness_lag_seconds", count=3)
    return lake, events


def rule_file() -> dict:
    return yaml.safe_load(RULES.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_pushed_series_arrive_in_prometheus(prometheus, observed_lake):
    jobs = {s["metric"]["job"] for s in prometheus.query("ridelake_run_last_success_timestamp_seconds")}
    assert jobs == set(JOBS)
    written = {s["metric"]["stream"]: float(s["value"][1]) for s in prometheus.query("ridelake_bronze_records_written")}
    assert sum(written.values()) == 20000, written
    versions = {s["metric"]["table"] for s in prometheus.query('ridelake_table_version{layer="silver"}')}
    assert {"users", "rides", "rides_pending", "rides_deleted"} <= versions
    # Gauges of the last run: the silver rows read equal what bronze holds (one run read it all).
    lake, _ = observed_lake
    bronze_rows = sum(read_delta(str(lake / f"bronze/ridehail/{t}")).height for t in ("users", "rides"))
    read = sum(float(s["value"][1]) for s in prometheus.query('ridelake_silver_rows{outcome="read"}'))
    assert read == bronze_rows
    # Freshness: bronze's newest change is the newest _ab_cdc_updated_at of its rows.
    rides = read_delta(str(lake / "bronze/ridehail/rides"))
    # source-mysql declares _ab_cdc_updated_at a plain string: bronze keeps the text.
    newest = rides["_ab_cdc_updated_at"].str.to_datetime(time_zone="UTC").max().timestamp()
    [bronze_rides] = prometheus.query('ridelake_newest_change_timestamp_seconds{layer="bronze",table="ridehail.rides"}')
    assert abs(float(bronze_rides["value"][1]) - newest) < 0.001


def test_every_dashboard_query_returns_data(prometheus, observed_lake):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    empty = [(title, expr) for title, expr in exprs if not prometheus.query(expr)]
    assert not empty, empty


def test_every_rule_expression_runs_on_real_series(prometheus, observed_lake):
    groups = rule_file()["groups"]
    records = [r for g in groups for r in g["rules"] if "record" in r]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {"RidelakeNoRecentSuccess", "RidelakeQuarantineHigh", "RidelakePendingRidesOld",
                                             "RidelakeFreshnessLag"}
    for rule in records:
        assert prometheus.query(rule["expr"]), rule["record"]
        assert prometheus.query(rule["record"]), f"{rule['record']} is not being recorded"
    for rule in alerts:
        prometheus.query(rule["expr"])  # parses and evaluates (returns data only while firing)
        # With `bool` comparisons the same expression, thresholds included, returns 0 or 1 for
        # every series it watches: it must watch some.
        as_bool = re.sub(r"(>=|<=|==|!=|>|<)\s*(?!bool\b)", r"\1 bool ", rule["expr"])
        assert prometheus.query(as_bool), f"{rule['alert']}: {as_bool} returns no data"
        # Each alert is "<signal> > <threshold>": every series it reads exists.
        names = set(re.findall(r"\b(ridelake[:_][a-z_:]+)", rule["expr"]))
        assert names, rule["alert"]
        for name in names:
            assert prometheus.query(name), f"{rule['alert']} reads {name}, which has no data"


def test_promtool_accepts_config_rules_and_rule_tests(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text((MONITORING / "prometheus/prometheus.yml").read_text().replace("rules/ridelake.rules.yml", str(RULES)))
    for args in (["check", "config", str(config)], ["check", "rules", str(RULES)],
                 ["test", "rules", str(RULES.with_name("ridelake.rules.test.yml"))]):
        proc = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_and_provisioning_agree():
    dashboard = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    [datasource] = source["datasources"]
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {datasource["uid"]}, "every panel uses the provisioned datasource"
    assert "__inputs" not in dashboard, "file provisioning cannot resolve __inputs"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert [r.split(":")[0] for r in rows] == ["Bronze", "Silver", "Gold", "Failures"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/ridelake.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file"


def promtool_check_metrics(text: str) -> None:
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_failed_sync_reports_its_error_and_what_it_committed(tmp_path):
    messages, catalog = generate(tmp_path, "--users", "50", "--rides", "200", "--changes", "0", "--state-every", "100")
    lines = messages.read_text().splitlines()
    bad = "\n".join(lines + ["{not json"]) + "\n"
    metrics, events = tmp_path / "bronze.prom", tmp_path / "events.jsonl"
    config = local_config(tmp_path, tmp_path / "lake", flush_interval_seconds=0,
                          observability={"metrics_file": str(metrics), "openlineage_file": str(events)})
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=bad.encode())
    assert run.returncode == 1
    text = metrics.read_text()
    promtool_check_metrics(text)
    assert 'ridelake_run_errors{error_type="malformed_input"} 1' in text
    assert "ridelake_run_success 0" in text
    assert "ridelake_run_last_success_timestamp_seconds" not in text, "a failure must not claim a success"
    written = sum(int(v) for v in re.findall(r'^ridelake_bronze_records_written\{stream="[^"]+"\} (\d+)$', text, re.M))
    committed = sum(read_delta(str(p)).height for p in (tmp_path / "lake").glob("*/*") if (p / "_delta_log").exists())
    assert written == committed > 0, "what the states before the bad line covered is committed and counted"
    kinds = [json.loads(line)["eventType"] for line in events.read_text().splitlines()]
    assert kinds == ["START", "FAIL"]


def test_a_failed_silver_build_keeps_the_last_success(tmp_path):
    import ridelake

    metrics, events = tmp_path / "silver.prom", tmp_path / "events.jsonl"
    with pytest.raises(ridelake.MissingTableError):
        ridelake.build_silver(str(tmp_path / "empty-lake"), metrics_file=str(metrics), lineage_file=str(events))
    text = metrics.read_text()
    promtool_check_metrics(text)
    assert 'ridelake_run_errors{error_type="missing_input"} 1' in text and "ridelake_run_success 0" in text
    assert "ridelake_run_last_success_timestamp_seconds" not in text
    [start, fail] = [json.loads(line) for line in events.read_text().splitlines()]
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert "bronze table" in fail["run"]["facets"]["errorMessage"]["message"]
    validate_openlineage(fail)


def test_metrics_files_pass_promtool(observed_lake, tmp_path):
    import ridelake

    lake, _ = observed_lake
    for build, name in ((ridelake.build_silver, "silver"), (ridelake.build_gold, "gold")):
        path = tmp_path / f"{name}.prom"
        report = build(str(lake), metrics_file=str(path))
        assert report["noop"], "the lake is up to date"
        text = path.read_text()
        promtool_check_metrics(text)
        assert "ridelake_run_success 1" in text and "ridelake_run_last_success_timestamp_seconds" in text
        assert not re.search(r"^ridelake_\w+_total", text, re.M), "no counter names on gauges"


# ---- OpenLineage ---------------------------------------------------------------------------------

def _facet_classes() -> dict[str, type]:
    import openlineage.client.generated as generated

    classes = {}
    for module in pkgutil.iter_modules(generated.__path__):
        loaded = importlib.import_module(f"openlineage.client.generated.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and hasattr(value, "_get_schema") and "facet" in value.__name__.lower():
                classes[value._get_schema()] = value
    return classes


def validate_openlineage(event: dict) -> None:
    """Rebuilds the event with openlineage-python's classes (which check required fields, types,
    the run id and the event time) and checks that the official serialisation is our document."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    classes = _facet_classes()

    def facets(values: dict) -> dict:
        built = {}
        for key, facet in values.items():
            cls = classes.get(facet["_schemaURL"])
            assert cls is not None, f"facet {key}: unknown schema {facet['_schemaURL']}"
            fields = {k: v for k, v in facet.items() if not k.startswith("_")}
            built[key] = cls(**fields, producer=facet["_producer"])
        return built

    rebuilt = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=event["run"]["runId"], facets=facets(event["run"]["facets"])),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"], facets=facets(event["job"]["facets"])),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d["facets"]),
                             inputFacets=facets(d.get("inputFacets", {}))) for d in event["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d["facets"]),
                               outputFacets=facets(d.get("outputFacets", {}))) for d in event["outputs"]],
    )
    assert rebuilt.schemaURL == event["schemaURL"]

    def without_empty(value):
        if isinstance(value, dict):
            return {k: without_empty(v) for k, v in value.items() if v not in ({}, [], None) or k in ("inputs", "outputs")}
        if isinstance(value, list):
            return [without_empty(v) for v in value]
        return value

    assert without_empty(Serde.to_dict(rebuilt)) == without_empty(event)


def test_lineage_events_validate_and_match_the_tables(observed_lake):
    lake, events_file = observed_lake
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    for event in events:
        validate_openlineage(event)
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert runs == {"bronze.sync": ["START", "COMPLETE"], "silver.build": ["START", "COMPLETE"],
                    "gold.build": ["START", "COMPLETE"]}
    by_job = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    silver = by_job["silver.build"]
    assert {d["name"] for d in silver["inputs"]} == {str(lake / "bronze/ridehail/users"), str(lake / "bronze/ridehail/rides")}
    outputs = {d["name"]: d for d in silver["outputs"]}
    rides = outputs[str(lake / "silver/rides")]
    assert rides["namespace"] == "file"
    assert rides["outputFacets"]["outputStatistics"]["rowCount"] == read_delta(str(lake / "silver/rides")).height
    from deltalake import DeltaTable

    assert rides["facets"]["version"]["datasetVersion"] == str(DeltaTable(str(lake / "silver/rides")).version())
    # Gold's input is silver rides as of the version silver's run wrote.
    assert by_job["gold.build"]["inputs"][0]["facets"]["version"] == rides["facets"]["version"]
    bronze_out = {d["name"]: d["outputFacets"]["outputStatistics"]["rowCount"] for d in by_job["bronze.sync"]["outputs"]}
    assert sum(bronze_out.values()) == 20000


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_lineage_over_http_with_the_standard_variables(observed_lake, monkeypatch):
    import ridelake

    lake, _ = observed_lake
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OPENLINEAGE_API_KEY", "secret-token")
        monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "ridehail-prod")
        ridelake.build_gold(str(lake))
    finally:
        server.shutdown()
    assert [(path, body["eventType"]) for path, _, body in _Collector.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE")]
    for _, headers, body in _Collector.received:
        assert headers["authorization"] == "Bearer secret-token"
        assert body["job"]["namespace"] == "ridehail-prod"
        validate_openlineage(body)


# ---- Catalog -----------------------------------------------------------------------------------

def test_every_delta_table_has_a_name_and_a_description(observed_lake):
    from deltalake import DeltaTable

    lake, _ = observed_lake
    tables = sorted(p.parent for p in lake.rglob("_delta_log"))
    assert len(tables) == 2 + 5 + 6 + 2, tables  # bronze, silver, gold, the silver and gold leases
    for path in tables:
        metadata = DeltaTable(str(path)).metadata()
        assert metadata.name and metadata.description, path
    for table, column in (("bronze/ridehail/rides", "_ab_cdc_updated_at"), ("silver/rides", "customer_id"),
                          ("silver/users", "is_deleted"), ("gold/driver_stats", "mean_rating"), ("gold/daily_city_kpis", "city")):
        comments = {f.name: f.metadata.get("comment") for f in DeltaTable(str(lake / table)).schema().fields}
        assert comments[column], f"{table}.{column}: columns we know carry comments"


OPENMETADATA_CHECK = r"""
import os, site, sys, types
import yaml
# The package's __init__ imports every connector's dependencies; the generated models need none.
package = types.ModuleType("metadata")
package.__path__ = [os.path.join(site.getsitepackages()[0], "metadata")]
sys.modules["metadata"] = package
from metadata.generated.schema.metadataIngestion.workflow import OpenMetadataWorkflowConfig
text = os.path.expandvars(open(sys.argv[1]).read())
config = OpenMetadataWorkflowConfig.model_validate(yaml.safe_load(text))
connection = config.source.serviceConnection.root.config
storage = connection.configSource.connection
print(type(connection).__name__, type(connection.configSource).__name__, storage.securityConfig.endPointURL, connection.configSource.bucketName)
"""


def test_openmetadata_ingestion_config_validates():
    python = VENVS / "catalog/bin/python"
    assert python.exists(), "run scripts/setup-test-env.sh"
    env = {**os.environ, "MINIO_ENDPOINT": "http://minio:9000", "MINIO_ACCESS_KEY": "key", "MINIO_SECRET_KEY": "secret",
           "OPENMETADATA_JWT": "jwt", "RIDELAKE_BUCKET": "lake"}
    proc = subprocess.run([str(python), "-c", OPENMETADATA_CHECK, str(REPO / "catalog/openmetadata/deltalake.yaml")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["DeltaLakeConnection", "StorageConfig", "http://minio:9000/", "lake"]
