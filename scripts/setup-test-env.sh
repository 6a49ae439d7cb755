#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently, outside the clone so CI and later
# sessions reuse it:
#   $RIDELAKE_CACHE/venvs/test      pytest, protocol models, deltalake, polars, duckdb+delta, moto, orjson,
#                                   playwright (drives Debian's Chromium in the browser tests),
#                                   ray (the engine=ray tests start a two-node cluster of their own),
#                                   pyspark (the engine=spark tests start a local session; no Delta jars)
#   $RIDELAKE_CACHE/venvs/faker     airbyte-source-faker (its airbyte-cdk pin clashes with PyAirbyte's)
#   $RIDELAKE_CACHE/venvs/pyairbyte PyAirbyte, the client that drives our binary like Airbyte would
#   $RIDELAKE_CACHE/venvs/mage      mage-ai (its polars pin overridden by the 2.1 ridelake needs)
#   $RIDELAKE_CACHE/venvs/catalog   OpenMetadata's generated models (to validate our ingestion config)
#   Debian: ceph-mon ceph-osd radosgw  (a real S3 server for tests)
#   Debian: prometheus prometheus-pushgateway  (metrics tests, promtool)
#   Debian: mariadb-server  (binaries only: the real-CDC tests start a private server)
#   Debian: chromium  (the Mage UI test drives it headless through Playwright)
#   Debian: strace  (the durability test reads the order of fsyncs and STATE echoes)
#   Debian: openjdk-17-jre-headless  (Spark's JVM, when the machine has no Java 17+)
# With --minimal only the first venv is made (what scripts/demo.sh needs).
set -euo pipefail
MINIMAL=${1:-}
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
VENVS=$CACHE/venvs
mkdir -p "$VENVS"
export SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
export UV_CACHE_DIR=$CACHE/uv-cache

log() { echo "[setup] $*" >&2; }

if [ ! -x "$VENVS/tools/bin/uv" ]; then
  log "installing uv"
  python3 -m venv "$VENVS/tools"
  "$VENVS/tools/bin/pip" install -q "uv>=0.5"
fi
UV="$VENVS/tools/bin/uv"

# make_venv NAME PACKAGES...: (re)creates the venv when the package list changed. MAKE_VENV_OVERRIDE
# names a uv overrides file (a pin the packages' own pins must give way to).
make_venv() {
  local name=$1; shift
  local want="$* ${MAKE_VENV_OVERRIDE:+override:$(cat "$MAKE_VENV_OVERRIDE")}"
  local dir=$VENVS/$name
  if [ -f "$dir/.ridelake-packages" ] && [ "$(cat "$dir/.ridelake-packages")" = "$want" ]; then
    return 0
  fi
  log "creating venv $name"
  rm -rf "$dir"
  "$UV" venv -q --python "$(command -v python3)" "$dir"
  "$UV" pip install -q --python "$dir/bin/python" ${MAKE_VENV_OVERRIDE:+--override "$MAKE_VENV_OVERRIDE"} "$@"
  echo "$want" > "$dir/.ridelake-packages"
}

make_venv test \
  "pytest>=8" "pytest-timeout" "airbyte-protocol-models-pdv2==0.18.0" "deltalake==1.6.6" \
  "polars>=2.1,<2.2" "pyarrow>=21" "duckdb==1.4.4" "duckdb-ext[delta,httpfs]" "moto[server]==5.2.5" \
  "boto3" "orjson" "psutil" "pytz" "maturin>=1.16,<2" "hypothesis" "psycopg[binary]>=3.2" "pandas>=2.2" \
  "openlineage-python==1.54.0" "pyyaml>=6" "mysql-replication==1.0.9" "pymysql>=1.1" "playwright>=1.50,<2" "ray==2.60.0" \
  "pyspark==4.1.4"
if [ "$MINIMAL" = "--minimal" ]; then
  log "python environment ready under $VENVS/test"
  exit 0
fi
make_venv faker "airbyte-source-faker==7.2.1"
make_venv pyairbyte "airbyte==0.71.3"
OVERRIDES=$(mktemp); echo "polars>=2.1,<2.2" > "$OVERRIDES"
MAKE_VENV_OVERRIDE=$OVERRIDES make_venv mage "mage-ai==0.9.80" "polars>=2.1,<2.2"
rm -f "$OVERRIDES"
# openmetadata-ingestion's full dependency tree fetches from GitHub (not reachable here) and is
# not needed: the generated pydantic models need pydantic, email-validator and SQLAlchemy only.
CATALOG_PACKAGES="openmetadata-ingestion==2.0.6.0 --no-deps; pydantic[email]>=2.7,<3 pyyaml sqlalchemy>=2"
if [ "$(cat "$VENVS/catalog/.ridelake-packages" 2>/dev/null)" != "$CATALOG_PACKAGES" ]; then
  log "creating venv catalog"
  rm -rf "$VENVS/catalog"
  "$UV" venv -q --python "$(command -v python3)" "$VENVS/catalog"
  "$UV" pip install -q --python "$VENVS/catalog/bin/python" "pydantic[email]>=2.7,<3" pyyaml "sqlalchemy>=2"
  "$UV" pip install -q --python "$VENVS/catalog/bin/python" --no-deps "openmetadata-ingestion==2.0.6.0"
  echo "$CATALOG_PACKAGES" > "$VENVS/catalog/.ridelake-packages"
fi

if ! command -v radosgw >/dev/null 2>&1; then
  log "installing Ceph RGW from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    ceph-mon ceph-osd radosgw uuid-runtime curl >/dev/null
fi
if ! command -v prometheus-pushgateway >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  log "installing Prometheus and the Pushgateway from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null
fi
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  # The real-CDC tests start their own private server (own data dir and port); only the binaries are needed.
  log "installing MariaDB from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! command -v strace >/dev/null 2>&1; then
  # The durability test reads the order of the destination's fsyncs and writes from strace.
  log "installing strace from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends strace >/dev/null
fi
if ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then
  # Spark 4 runs on Java 17 or later.
  log "installing Java 17 from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi
log "test environment ready under $VENVS"
