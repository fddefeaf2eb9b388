"""``llmrca run`` (the notebook suite, executed per incident) and ``llmrca lab`` (JupyterLab on
the notebooks with the store configured)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="execute the notebook suite for an incident; report.html/md, findings.json",
        description="Execute the workbench notebooks (triage, reproduction, version comparison, "
                    "report, and any of --notebooks DIR) with papermill into "
                    "OUT/<incident>/<run-id>/: executed notebooks, report.html (no code, no "
                    "scripts), report.md, findings.json, avid.json. Replays are cached in the "
                    "store, so a re-run is fast.")
    run.add_argument("incident", nargs="?", help="incident id")
    run.add_argument("--versions", nargs="+", default=[], metavar="VERSION",
                     help="versions to replay (default: the deployed one and its predecessor)")
    run.add_argument("--samples", type=int, default=20,
                     help="samples per interaction and version (default 20)")
    run.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    run.add_argument("--max-new-tokens", type=int, default=32,
                     help="tokens generated at most per sample (default 32)")
    run.add_argument("--only", nargs="+", metavar="NAME",
                     help="run only these notebooks (the report is always added)")
    run.add_argument("--notebooks", action="append", default=[], metavar="DIR",
                     help="a folder of your own parameterized notebooks to add to the suite "
                          "(repeatable)")
    run.add_argument("--out", default="reports", help="output folder (default: reports)")
    run.add_argument("--anonymize", action="store_true",
                     help="mask personal data (ids, emails, phone numbers, keys, names) in every "
                          "export")
    run.add_argument("--run-id", help="name the run folder (default: UTC time and a hash)")
    run.add_argument("--start-timeout", type=int, default=120,
                     help="seconds for a kernel to start (default 120)")
    run.add_argument("--timeout", type=int, default=1800,
                     help="seconds one cell may run (default 1800)")
    run.add_argument("--list", action="store_true", help="list the notebooks of the suite")
    run.set_defaults(func=cmd_run)

    lab = subparsers.add_parser(
        "lab", help="open JupyterLab on the notebooks with the store configured",
        description="Start JupyterLab in the notebooks folder with LLMRCA_DB set to the store, "
                    "so every notebook opens the same store by default.")
    lab.add_argument("--notebooks", default=None,
                     help="folder to open (default: ./notebooks if present, else the templates "
                          "copied to ./notebooks)")
    lab.add_argument("--port", type=int, help="port for the server")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--dry-run", action="store_true",
                     help="print the command line and environment instead of starting it")
    lab.set_defaults(func=cmd_lab)


def cmd_run(args) -> int:
    from llmrca.errors import InvalidArgumentError
    from llmrca.reports import notebook_suite, run_suite

    if args.list:
        for spec in notebook_suite(args.notebooks):
            print(f"{spec.name:<14} {spec.description}  ({spec.path})")
        return 0
    if not args.incident:
        raise InvalidArgumentError("an incident id is required (or --list)")
    result = run_suite(
        args.incident, store_path=args.db, versions=args.versions, samples=args.samples,
        seed=args.seed, max_new_tokens=args.max_new_tokens, only=args.only,
        notebook_dirs=args.notebooks, out=args.out, anonymize=args.anonymize,
        run_id=args.run_id, start_timeout=args.start_timeout, execution_timeout=args.timeout,
        log=lambda line: print(line, flush=True))
    print(f"run {result.run_id} finished in {result.seconds:.1f} s: {result.output_dir}")
    for name, path in sorted(result.files.items()):
        print(f"  {name:<14} {path}")
    return 0


def lab_command(notebooks: Path, db: Path, port: int | None = None, no_browser: bool = False
                ) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command line and the environment additions for it."""
    argv = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={notebooks}"]
    if port:
        argv.append(f"--port={port}")
    if no_browser:
        argv.append("--no-browser")
    from llmrca.reports.runner import kernel_environment

    env = {"LLMRCA_DB": str(db), **kernel_environment()}
    env.pop("MPLBACKEND")        # interactive use: keep the inline backend
    return argv, env


def cmd_lab(args) -> int:
    from llmrca.config import db_path
    from llmrca.reports import template_dir

    folder = Path(args.notebooks) if args.notebooks else Path("notebooks")
    db = db_path(args.db).expanduser().resolve()
    copy = not folder.is_dir()
    argv, env = lab_command(folder.resolve(), db, args.port, args.no_browser)
    if args.dry_run:
        if copy:
            print(f"# would copy the templates from {template_dir()} to {folder}")
        for key, value in env.items():
            print(f"{key}={shlex.quote(value)}")
        print(shlex.join(argv))
        return 0
    if copy:
        folder.mkdir(parents=True)
        for path in template_dir().glob("*.ipynb"):
            shutil.copy2(path, folder / path.name)
    return subprocess.call(argv, env={**os.environ, **env})
