"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""
import json
import os


def read_log(run_dir):
    """A run's log.jsonl records without their wall-clock times, for comparing runs."""
    records = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
    for r in records:
        r.pop("time_s")
    return records
