"""Build cost of the planted organisms, as a ratio to the test zoo.

Builds each organism of ``tests/organisms.py::planted_organism_spec`` (suffix, phrase, encoding,
erosion, system, leak) cold into a temporary cache — train, behaviour check — and reports wall and CPU
seconds, the training and check share, and CPU seconds as a ratio to the test zoo's own build
(read from its cached manifest, or built cold too with ``--cold-test-zoo``). CPU seconds, not wall:
these machines are shared, and wall time measures the neighbours.

Usage:
    python benchmarks/bench_plants.py [--seed 0] [--kinds suffix erosion] [--cold-test-zoo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def _cpu_seconds(build) -> float:
    return float(json.loads((build.root / "zoo.json").read_text())["cpu_seconds"])


def _train_seconds(build) -> float:
    manifest = json.loads((build.root / "zoo.json").read_text())
    return sum(v["train_seconds"] for v in manifest["versions"].values())


def main(argv=None) -> int:
    from llmrca.zoo import TEST_SPEC, build_zoo
    from organisms import PLANT_KINDS, TEST_CACHE, planted_organism_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", choices=PLANT_KINDS, default=list(PLANT_KINDS))
    parser.add_argument("--cold-test-zoo", action="store_true",
                        help="build the test zoo cold too, instead of reading its manifest")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="llmrca-bench-plants-"))
    try:
        reference = build_zoo(TEST_SPEC, cache_dir=workdir if args.cold_test_zoo else TEST_CACHE)
        test_cpu = _cpu_seconds(reference)
        print(f"test zoo ({len(TEST_SPEC.versions)} versions): {test_cpu:.1f} CPU s "
              f"({reference.build_seconds:.1f} s wall when built)")
        print(f"{'organism':<10} {'versions':>8} {'examples':>8} {'wall s':>7} {'CPU s':>6} "
              f"{'train s':>7} {'vs test zoo':>11}")
        total = 0.0
        for kind in args.kinds:
            spec = planted_organism_spec(kind, args.seed)
            start = time.perf_counter()
            build = build_zoo(spec, cache_dir=workdir)
            wall = time.perf_counter() - start
            cpu = _cpu_seconds(build)
            total += cpu
            examples = sum(len(p.read_text().splitlines())
                           for p in build.training_data.values())
            print(f"{kind:<10} {len(spec.versions):>8} {examples:>8} {wall:>7.1f} {cpu:>6.1f} "
                  f"{_train_seconds(build):>7.1f} {cpu / test_cpu:>10.2f}x")
        print(f"all {len(args.kinds)} organisms: {total:.1f} CPU s = "
              f"{total / test_cpu:.2f}x the test zoo")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
