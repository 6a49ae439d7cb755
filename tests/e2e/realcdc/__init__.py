"""Real change data capture for the end-to-end tests.

- `mariadb`: a private MariaDB server with a ROW binlog (never the machine's shared server);
- `workload`: the ride-hailing application's tables and a seeded stream of realistic transactions;
- `source_mysql`: the binlog (and table snapshots) turned into the Airbyte messages source-mysql
  emits in CDC mode, in its Java 3.x and Kotlin 3.9+ shapes, plus self-checks of the harness.

Used by tests/e2e/test_real_cdc.py, test_real_cdc_model.py and test_real_cdc_drift.py.
"""
