"""Run inside the PyAirbyte venv: source-faker → destination-delta-lake, twice (the second run
resumes from the states our destination echoed). Prints a JSON summary on the last line."""
import json
import os
import sys

os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
import airbyte as ab  # noqa: E402

faker_bin, dest_bin, lake, state_dir = sys.argv[1:5]
source = ab.get_source("source-faker", local_executable=faker_bin,
                       config={"count": 300, "seed": 5, "parallelism": 1, "always_updated": False, "records_per_slice": 100})
source.check()
source.select_streams(["users", "products", "purchases"])
destination = ab.get_destination("destination-delta-lake", local_executable=dest_bin,
                                 config={"storage": {"storage_type": "Local", "local_path": lake}, "flush_interval_seconds": 0})
destination.check()
state_cache = ab.new_local_cache("ridelake_state", cache_dir=state_dir)
first = destination.write(source, cache=False, state_cache=state_cache)
second = destination.write(source, cache=False, state_cache=state_cache)
print(json.dumps({"first": first.processed_records, "second": second.processed_records}))
