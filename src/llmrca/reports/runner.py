"""``llmrca run``: execute the notebook suite with papermill into ``<out>/<incident>/<run-id>/``.

A run writes the executed notebooks, ``results/`` (each notebook's results), ``report.md``,
``figures/``, ``findings.json``, ``avid.json`` (all written by the report notebook),
``report.html`` (the executed report notebook through nbconvert, code hidden, figures as data
URIs, every script removed) and ``run.json`` (parameters, notebooks, timings, interpreter).

- Parameters are validated (:class:`~llmrca.reports.params.RunParameters`), the incident and
  versions checked in the store, and every template checked for a ``parameters`` cell before
  any notebook starts.
- Kernels run on this interpreter with this ``llmrca`` importable (the kernel spec is built
  here, not looked up: a stored kernel name, or a ``python3`` spec of another environment,
  cannot break or redirect a run).
- A failing cell raises :class:`~llmrca.errors.NotebookExecutionError` (notebook, cell index,
  exception name and value); the partial notebook is kept.
- Replays are content-addressed in the store, so a re-run generates nothing it has.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmrca.errors import InvalidArgumentError, NotebookExecutionError, UnknownNameError
from llmrca.reports.params import RunParameters
from llmrca.reports.suite import NotebookSpec, notebook_suite

__all__ = ["NotebookRun", "RunResult", "export_html", "kernel_manager_class", "package_root",
           "run_suite", "sanitize_html"]

#: Seconds to wait for a kernel to start, and for one cell to finish, unless told otherwise.
START_TIMEOUT = 120
EXECUTION_TIMEOUT = 1800


def package_root() -> Path:
    """The folder that holds the ``llmrca`` package this process imported (what a kernel must
    put first on its path to import the same one)."""
    import llmrca

    return Path(llmrca.__file__).resolve().parent.parent


def kernel_environment() -> dict[str, str]:
    """Environment additions for a kernel: this llmrca first on ``PYTHONPATH``, no stray
    matplotlib backend."""
    existing = os.environ.get("PYTHONPATH", "")
    parts = [str(package_root())] + [p for p in existing.split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(parts)), "MPLBACKEND": "Agg"}


def kernel_manager_class():
    """A jupyter_client kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``
    with :func:`kernel_environment`, whatever kernel name the notebook or papermill asks for."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class SameInterpreterKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    # ERROR: the kernel's start-up notices (TCP transport on localhost) would mix
                    # with the run's own output on stderr.
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                          "--log-level=ERROR"],
                    display_name=f"Python ({sys.executable})", language="python",
                    env=kernel_environment(), metadata={})
            return self._kernel_spec

    return SameInterpreterKernelManager


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook."""

    name: str
    template: Path
    output: Path
    seconds: float


@dataclass(frozen=True)
class RunResult:
    """What ``llmrca run`` produced.

    Attributes
    ----------
    run_id : str
    output_dir : Path
        ``<out>/<incident>/<run-id>``.
    notebooks : tuple of NotebookRun
    files : dict
        ``report.html``, ``report.md``, ``findings.json``, ``avid.json``, ``run.json`` -> path
        (those that were written).
    seconds : float
    """

    incident_id: str
    run_id: str
    output_dir: Path
    notebooks: tuple[NotebookRun, ...]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)


def _check_templates(suite: list[NotebookSpec], params: RunParameters) -> None:
    import nbformat

    for spec in suite:
        if not spec.path.is_file():
            raise InvalidArgumentError(f"notebook '{spec.name}': template {spec.path} is missing")
        notebook = nbformat.read(str(spec.path), as_version=4)
        cells = [c for c in notebook.cells if c.cell_type == "code"
                 and "parameters" in c.get("metadata", {}).get("tags", [])]
        if not cells:
            raise InvalidArgumentError(f"notebook '{spec.name}' ({spec.path}) has no cell "
                                       "tagged 'parameters'")


def _check_store(params: RunParameters) -> list[str]:
    from llmrca.reports.notebook import default_versions
    from llmrca.store import open_store
    from llmrca.store.model_versions import model_version_names
    from llmrca.store.queries import incident_summary

    if not Path(params.store_path).is_file():
        raise InvalidArgumentError(f"store {params.store_path} does not exist (run `llmrca init` "
                                   "and ingest the incident first)")
    with open_store(params.store_path, read_only=True) as store:
        incident_summary(store, params.incident_id)
        names = model_version_names(store)
        for version in params.versions:
            if version not in names:
                raise UnknownNameError("model version", version, names)
        return list(params.versions) or default_versions(store, params.incident_id)


def new_run_id(params: RunParameters) -> str:
    """``<UTC time>-<6 hex of the parameters>``: sortable, and distinct per parameter set."""
    digest = hashlib.sha256(json.dumps(params.notebook_parameters(), sort_keys=True,
                                       default=str).encode()).hexdigest()[:6]
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + digest


def run_suite(incident_id: str, *, store_path: str | os.PathLike | None = None,
              versions: Sequence[str] = (), samples: int = 20, seed: int = 0,
              max_new_tokens: int = 32, only: Sequence[str] | None = None,
              notebook_dirs: Sequence[str | os.PathLike[str]] = (), out: str | os.PathLike = "reports",
              anonymize: bool = False, run_id: str | None = None,
              start_timeout: int = START_TIMEOUT, execution_timeout: int = EXECUTION_TIMEOUT,
              log: Any = None) -> RunResult:
    """Execute the notebook suite for one incident.

    Parameters
    ----------
    store_path : path, optional
        The store (default ``$LLMRCA_DB`` or ``./.llmrca/llmrca.duckdb``).
    versions, samples, seed, max_new_tokens, anonymize
        The notebooks' parameters (:data:`~llmrca.reports.params.PARAMETER_DOCS`).
    only : names, optional
        Run only these notebooks (and the report).
    notebook_dirs : folders
        More notebooks (see :func:`~llmrca.reports.suite.notebook_suite`).
    out : folder
        Runs go to ``<out>/<incident>/<run-id>/``.
    start_timeout, execution_timeout : seconds
        For a kernel to start, and for one cell to run.
    log : callable, optional
        Called with one line per step (the CLI prints them).

    Raises
    ------
    InvalidArgumentError, UnknownNameError, NotFoundError
        Bad parameters, notebook names, incident or versions: before any notebook starts.
    NotebookExecutionError
        A cell failed (or a kernel did not start); the partial notebook is kept.
    """
    from llmrca.config import db_path

    started = time.perf_counter()
    say = log or (lambda line: None)
    if start_timeout < 1 or execution_timeout < 1:
        raise InvalidArgumentError("timeouts must be at least 1 second")
    store = db_path(store_path).expanduser().resolve()
    params = RunParameters(incident_id=incident_id, store_path=str(store),
                           versions=tuple(versions), samples=samples, seed=seed,
                           max_new_tokens=max_new_tokens, anonymize=anonymize)
    suite = notebook_suite(notebook_dirs, only)
    _check_templates(suite, params)
    chosen = _check_store(params)
    run_id = run_id or new_run_id(params)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", run_id):
        raise InvalidArgumentError(f"run id {run_id!r}: letters, digits, '.', '_' or '-'")
    folder = Path(out).expanduser().resolve() / incident_id / run_id
    folder.mkdir(parents=True, exist_ok=True)
    params = RunParameters(incident_id=incident_id, store_path=str(store),
                           versions=tuple(chosen), samples=samples, seed=seed,
                           max_new_tokens=max_new_tokens, output_dir=str(folder),
                           anonymize=anonymize, extra={"run_id": run_id})
    say(f"run {run_id}: {', '.join(s.name for s in suite)} -> {folder}")

    import papermill
    from papermill.exceptions import PapermillExecutionError

    manager = kernel_manager_class()
    runs: list[NotebookRun] = []
    for spec in suite:
        target = folder / f"{spec.name}.ipynb"
        say(f"  {spec.name} ...")
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(spec.path), str(target), parameters=params.notebook_parameters(),
                kernel_name="python3", kernel_manager_class=manager, progress_bar=False,
                start_timeout=start_timeout, execution_timeout=execution_timeout,
                cwd=str(folder), log_output=False)
        except PapermillExecutionError as exc:
            raise NotebookExecutionError(spec.name, _failed_cell(target, int(exc.cell_index)),
                                         str(exc.ename), str(exc.evalue), str(target)) from exc
        except Exception as exc:          # a kernel that did not start, a timeout
            raise NotebookExecutionError(spec.name, -1, type(exc).__name__,
                                         " ".join(str(exc).split())[:500],
                                         str(target) if target.exists() else None) from exc
        runs.append(NotebookRun(spec.name, spec.path, target, time.perf_counter() - t0))
        say(f"  {spec.name} done in {runs[-1].seconds:.1f} s")
    files: dict[str, Path] = {name: folder / name for name in
                              ("report.md", "findings.json", "avid.json")
                              if (folder / name).is_file()}
    if (folder / "report.ipynb").is_file():
        files["report.html"] = export_html(folder / "report.ipynb", folder / "report.html",
                                           title=f"Incident report {incident_id}")
    manifest = {"run_id": run_id, "incident_id": incident_id,
                "parameters": params.notebook_parameters(),
                "notebooks": [{"name": r.name, "template": str(r.template),
                               "seconds": round(r.seconds, 3)} for r in runs],
                "interpreter": sys.executable, "llmrca": str(package_root()),
                "seconds": round(time.perf_counter() - started, 3)}
    files["run.json"] = folder / "run.json"
    files["run.json"].write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if anonymize:
        from llmrca.reports.export import anonymize_run

        anonymize_run(folder)
    return RunResult(incident_id, run_id, folder, tuple(runs), files,
                     time.perf_counter() - started, params.notebook_parameters())


def _failed_cell(path: Path, reported: int) -> int:
    """The index of the failing cell in the kept notebook (papermill puts an error notice above
    the first cell, which shifts its own count by one)."""
    import nbformat

    try:
        notebook = nbformat.read(str(path), as_version=4)
    except (OSError, ValueError):
        return reported
    for index, cell in enumerate(notebook.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return reported


def sanitize_html(text: str) -> str:
    """Remove every script, external resource and event handler from an HTML page.

    Scripts (MathJax, require.js, widget and mermaid loaders) go whole; ``<link>`` elements that
    load from elsewhere go; ``on*`` attributes and ``javascript:`` URLs go. Inline styles and
    ``data:`` images stay.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for element in soup.find_all(["script", "iframe", "object", "embed", "base"]):
        element.decompose()
    for element in soup.find_all("link"):
        href = str(element.get("href") or "")
        if not href.startswith("data:"):
            element.decompose()
    for element in soup.find_all(True):
        for name in list(element.attrs):
            value = element.attrs[name]
            value = " ".join(value) if isinstance(value, list) else str(value)
            if name.lower().startswith("on") or (
                    name.lower() in ("href", "src", "action", "formaction", "xlink:href")
                    and value.strip().lower().startswith(("javascript:", "http:", "https:",
                                                          "//"))):
                del element.attrs[name]
    return str(soup)


#: Cells tagged so are left out of ``report.html`` (the notebook's own instructions).
REMOVE_TAG = "remove-from-report"


def export_html(notebook_path: Path, html_path: Path, title: str = "") -> Path:
    """An executed notebook as a self-contained HTML page: inputs and prompts hidden, figures
    embedded as data URIs (nbconvert's default for image outputs), no scripts."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(notebook_path), as_version=4)
    # The notebook's own how-to (what it reads, the setup call) is for whoever opens it, not for
    # the report's readers.
    notebook.cells = [cell for cell in notebook.cells
                      if REMOVE_TAG not in cell.get("metadata", {}).get("tags", [])]
    exporter = HTMLExporter(template_name="classic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.mathjax_url = ""
    exporter.require_js_url = ""
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    html_path.write_text(sanitize_html(body), encoding="utf-8")
    return html_path
