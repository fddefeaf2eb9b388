"""Logs in place vs copied: what registering saves, and what each query then costs.

Writes seeded random Parquet logs (``--rows`` over ``--files`` files), then in two fresh stores:
copies them in (``ingest_file`` per file) or registers them in place (``ingest_in_place`` on the
folder: one scan), and times the incident queries on each (``incident_summary``,
``event_counts``, ``log_outputs``). Checks the answers are equal. Prints a Markdown table of
seconds and in-place / copied ratios. Usage:
    python benchmarks/bench_in_place.py [--rows 200000] [--files 4]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def write_logs(folder: Path, rows: int, files: int, seed: int = 0) -> list[Path]:
    import duckdb
    import pandas as pd

    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwz") for _ in range(6)) for _ in range(200)]
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    paths = []
    per_file = rows // files
    for f in range(files):
        frame = pd.DataFrame({  # noqa: F841 - read by DuckDB below
            "timestamp": [f"2026-11-{1 + (i % 28):02d}T{i % 24:02d}:{i % 60:02d}:{f:02d}Z"
                          for i in range(per_file)],
            "model_version": [rng.choice(["m-a", "m-b", "m-c"]) for _ in range(per_file)],
            "session_id": [f"s{rng.randint(0, 5000)}" for _ in range(per_file)],
            "user_id": [f"u{rng.randint(0, 900)}" for _ in range(per_file)],
            "prompt": [" ".join(rng.choices(words, k=8)) for _ in range(per_file)],
            "output": [" ".join(rng.choices(words, k=20)) for _ in range(per_file)],
            "latency_ms": [rng.random() * 500 for _ in range(per_file)],
        })
        path = folder / f"part-{f}.parquet"
        con.execute(f"COPY (SELECT * FROM frame) TO '{path}' (FORMAT parquet)")
        paths.append(path)
    con.close()
    return paths


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args(argv)

    import pandas as pd

    from llmrca.ingest import ingest_file, ingest_in_place
    from llmrca.store import Store, queries
    from llmrca.store.ingest_writes import upsert_incident

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = write_logs(tmp / "logs", args.rows, args.files)
        stores = {"copied": Store(tmp / "copied.duckdb"), "in place": Store(tmp / "in.duckdb")}
        for store in stores.values():
            upsert_incident(store, {"incident_id": "INC-B", "title": "bench", "category": "other"})
        _, copy_s = timed(lambda: [ingest_file(stores["copied"], p, incident_id="INC-B",
                                               kind="logs") for p in paths])
        _, register_s = timed(lambda: ingest_in_place(stores["in place"], str(tmp / "logs"),
                                                      incident_id="INC-B"))
        rows = [("get the logs in (copy / scan and register)", copy_s, register_s)]
        answers = {}
        for name, query in [
            ("incident_summary", lambda s: queries.incident_summary(s, "INC-B").per_version),
            ("event_counts (day)", lambda s: queries.event_counts(s, "INC-B")),
            ("log_outputs", lambda s: queries.log_outputs(s, "INC-B")[["event_id", "output"]]),
        ]:
            results = {label: timed(lambda q=query, st=store: q(st))
                       for label, store in stores.items()}
            a, b = results["copied"][0], results["in place"][0]
            if name == "log_outputs":
                a, b = (f.sort_values("event_id").reset_index(drop=True) for f in (a, b))
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
            answers[name] = len(a)
            rows.append((name, results["copied"][1], results["in place"][1]))
        for store in stores.values():
            store.close()

    print(f"{args.rows:,} log rows in {args.files} Parquet files; answers equal on both stores\n")
    print("| step | copied (s) | in place (s) | in place / copied |")
    print("|---|---:|---:|---:|")
    for step, copied, in_place in rows:
        print(f"| {step} | {copied:.2f} | {in_place:.2f} | {in_place / copied:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
