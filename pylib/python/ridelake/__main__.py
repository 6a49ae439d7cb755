"""Command line: `python -m ridelake validate MODEL [--lake LAKE] [--namespace NS]`.

Checks a model file (and, with --lake, against the lake's bronze tables) and prints each problem
with its file and line; exits 1 when there is any. `python -m ridelake schema` prints the model
file's JSON Schema. S3 settings come from the usual AWS_* environment variables.
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
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(ridelake.model_schema(), indent=2))
        return 0
    options = {k: os.environ[k] for k in S3_KEYS if os.environ.get(k)} or None
    problems = ridelake.validate_model(args.model, args.lake, args.namespace, options)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.model}: fits" + (f" the bronze tables of {args.lake}" if args.lake else ""), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
