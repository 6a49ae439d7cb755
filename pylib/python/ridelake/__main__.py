"""Command line.

- `python -m ridelake validate MODEL [--lake LAKE] [--namespace NS]` checks a model file (and,
  with --lake, against the lake's bronze tables) and prints each problem with its file and line;
  exits 1 when there is any.
- `python -m ridelake schema` prints the model file's JSON Schema.
- `python -m ridelake maintain LAKE [--retention-hours H] [--log-retention-hours H] ...` compacts,
  checkpoints, cleans the logs of and vacuums every table, and prints the report as JSON.

S3 settings come from the usual AWS_* environment variables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import ridelake

S3_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ridelake")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a model file, and against a lake's bronze tables with --lake")
    validate.add_argument("model")
    validate.add_argument("--lake", help="a folder or s3://bucket/prefix")
    validate.add_argument("--namespace", default="ridehail")
    commands.add_parser("schema", help="print the model file's JSON Schema")
    maintain = commands.add_parser("maintain", help="compact, checkpoint, clean the logs of and vacuum every table of a lake")
    maintain.add_argument("lake", help="a folder or s3://bucket/prefix")
    maintain.add_argument("--namespace", default="ridehail")
    maintain.add_argument("--model", help="the model file (default: RIDELAKE_MODEL, else the default model)")
    maintain.add_argument("--retention-hours", type=float, default=168.0, help="delete files out of a table for longer than this (default 168)")
    maintain.add_argument("--log-retention-hours", type=float, default=720.0, help="remove log entries older than this, within what markers need (default 720)")
    maintain.add_argument("--target-file-mb", type=int, default=128, help="compacted file size (default 128)")
    maintain.add_argument("--no-compact", action="store_true", help="do not compact")
    maintain.add_argument("--no-vacuum", action="store_true", help="do not vacuum")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(ridelake.model_schema(), indent=2))
        return 0
    options = {k: os.environ[k] for k in S3_KEYS if os.environ.get(k)} or None
    if args.command == "maintain":
        report = ridelake.maintain(
            args.lake,
            args.namespace,
            options,
            model=args.model,
            retention_hours=args.retention_hours,
            log_retention_hours=args.log_retention_hours,
            target_file_mb=args.target_file_mb,
            compact=not args.no_compact,
            vacuum=not args.no_vacuum,
        )
        print(json.dumps(report, indent=2))
        return 0
    problems = ridelake.validate_model(args.model, args.lake, args.namespace, options)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.model}: fits" + (f" the bronze tables of {args.lake}" if args.lake else ""), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
