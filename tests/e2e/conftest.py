"""Fixtures for the end-to-end tests: the built binaries, protocol validation of every line they
print, and real S3 servers (moto for speed, Ceph RGW as a real S3 implementation)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from airbyte_protocol.models import AirbyteMessage
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))
DEST = BIN_DIR / "destination-delta-lake"
GEN = BIN_DIR / "ridelake-gen"
VENVS = Path(os.environ.get("RIDELAKE_VENVS", Path.home() / ".cache/ridelake/venvs"))


def validate_lines(stdout: str) -> list[dict]:
    """Every stdout line must be one valid AirbyteMessage (as PyAirbyte parses them)."""
    messages = []
    for number, line in enumerate(stdout.splitlines(), 1):
        assert line.strip(), f"empty stdout line {number}"
        AirbyteMessage.model_validate_json(line)
        messages.append(json.loads(line))
    return messages


@dataclass
class Run:
    returncode: int
    messages: list[dict]
    stderr: str

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def states(self) -> list[dict]:
        return [m["state"] for m in self.of("STATE")]

    @property
    def error(self) -> dict | None:
        traces = [m["trace"]["error"] for m in self.of("TRACE") if m["trace"]["type"] == "ERROR"]
        return traces[-1] if traces else None


def run_dest(*args: str, stdin: bytes | None = None, env: dict | None = None, timeout: int = 600) -> Run:
    proc = subprocess.run(
        [str(DEST), *args], input=stdin, capture_output=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    stdout = proc.stdout.decode()
    return Run(proc.returncode, validate_lines(stdout), proc.stderr.decode())


def generate(tmp: Path, *extra: str, name: str = "messages") -> tuple[Path, Path]:
    """Runs ridelake-gen; returns (messages.jsonl, catalog.json)."""
    messages, catalog = tmp / f"{name}.jsonl", tmp / f"{name}-catalog.json"
    subprocess.run([str(GEN), "--out", str(messages), "--catalog", str(catalog), *extra], check=True, capture_output=True)
    return messages, catalog


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def local_config(tmp: Path, lake: Path, **settings) -> Path:
    return write_json(tmp / "config.json", {"storage": {"storage_type": "Local", "local_path": str(lake)}, **settings})


@dataclass
class S3Server:
    name: str
    endpoint: str
    key: str
    secret: str
    buckets: list[str] = field(default_factory=list)

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.key, aws_secret_access_key=self.secret,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def new_bucket(self) -> str:
        bucket = f"lake-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def config(self, tmp: Path, bucket: str, prefix: str = "bronze", **settings) -> Path:
        storage = {"storage_type": "S3", "s3_bucket_name": bucket, "s3_bucket_path": prefix,
                   "s3_endpoint": self.endpoint, "access_key_id": self.key, "secret_access_key": self.secret}
        return write_json(tmp / f"config-{self.name}.json", {"storage": storage, **settings})

    def storage_options(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Every socket stays bound until all are picked: two calls to a
    one-port helper may be handed the same port, and two servers then race for it (the loser's
    readiness probe is answered by the winner)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def moto_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server("moto", f"http://127.0.0.1:{port}", "testing", "testing")
    deadline = time.time() + 30
    while True:
        try:
            server.client().list_buckets()
            break
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    yield server
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def rgw_server(tmp_path_factory):
    if shutil.which("radosgw") is None:
        pytest.fail("radosgw is not installed: run scripts/setup-test-env.sh")
    directory = tmp_path_factory.mktemp("rgw")
    port, mon_port = free_ports(2)
    subprocess.run([str(REPO / "scripts/start-rgw.sh"), str(directory), str(port), str(mon_port)], check=True,
                   capture_output=True, timeout=180)
    yield S3Server("rgw", f"http://127.0.0.1:{port}", "RGWKEY", "RGWSECRET")
    subprocess.run([str(REPO / "scripts/stop-rgw.sh"), str(directory)], timeout=60)


@pytest.fixture(params=["moto", "rgw"])
def s3(request) -> S3Server:
    return request.getfixturevalue(f"{request.param}_server")


def read_delta(uri: str, storage_options: dict | None = None):
    import polars as pl
    from deltalake import DeltaTable
    return pl.from_arrow(DeltaTable(uri, storage_options=storage_options).to_pyarrow_table())


def count_records(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            if line.startswith('{"type":"RECORD"'):
                stream = json.loads(line)["record"]["stream"]
                counts[stream] = counts.get(stream, 0) + 1
    return counts


def input_states(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line)["state"] for line in f if '"type":"STATE"' in line or line.startswith('{"state"')]


@pytest.fixture(scope="session")
def ray_cluster():
    """A two-node Ray cluster of the tests' own (`ray.cluster_utils.Cluster`: a head node and one
    more, one CPU each, small object stores), this process connected as the driver."""
    import ray
    from ray.cluster_utils import Cluster

    store = 100 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def spark():
    """A local Spark session of the tests' own: two executor threads, a failed task run again up
    to three more times (`local[2,4]`), its Python workers on this interpreter (which has ridelake)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2,4]").appName("ridelake-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
