"""The notebook suite: a registry of parameterized notebooks that ``llmrca run`` executes.

The shipped templates live in ``llmrca/notebooks/`` (package data; the repository's top-level
``notebooks/`` holds the same files, kept in sync by ``tests/test_notebooks.py``). Later steps
register more (attribution, internals, hypotheses) with :func:`register_notebook`; a
researcher's own folder of notebooks joins the suite with :func:`notebook_suite` (``--notebooks
DIR``): every ``*.ipynb`` there with a cell tagged ``parameters`` is run, after the shipped ones
and before the report, replacing a shipped notebook of the same name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llmrca.errors import InvalidArgumentError
from llmrca.registry import Registry

__all__ = ["NOTEBOOKS", "NotebookSpec", "available_notebooks", "get_notebook",
           "notebook_suite", "register_notebook", "template_dir"]


@dataclass(frozen=True)
class NotebookSpec:
    """One notebook of the suite.

    Attributes
    ----------
    name : str
        The suite name (``--only NAME``); also the executed notebook's file stem.
    path : Path
        The template.
    order : int
        Position in the run (lower first). The report runs last (``order`` 1000).
    description : str
        One line for ``llmrca run --list``.
    """

    name: str
    path: Path
    order: int = 500
    description: str = ""


NOTEBOOKS: Registry[NotebookSpec] = Registry("notebook")


def template_dir() -> Path:
    """Where the shipped templates are (inside the installed package)."""
    return Path(str(resources.files("llmrca") / "notebooks"))


def register_notebook(name: str, path: str | Path, *, order: int = 500, description: str = "",
                      replace: bool = False) -> NotebookSpec:
    """Add a notebook to the suite."""
    spec = NotebookSpec(name=name, path=Path(path), order=order, description=description)
    NOTEBOOKS.register(name, spec, replace=replace)
    return spec


def get_notebook(name: str) -> NotebookSpec:
    """The registered notebook ``name`` (unknown names list the valid ones)."""
    return NOTEBOOKS.get(name)


def available_notebooks() -> list[str]:
    """Registered notebook names in run order."""
    return [s.name for s in sorted((NOTEBOOKS.get(n) for n in NOTEBOOKS),
                                   key=lambda s: (s.order, s.name))]


_SHIPPED = (
    ("triage", 100, "incident record, timeline, scope, proposed severity, containment options"),
    ("reproduction", 200, "reproduction rates per version with intervals, outputs, perturbations"),
    ("comparison", 300, "teacher-forced log-probs per version, first divergence, outputs"),
    ("attribution", 350, "prompt segments on both versions, prime suspect, faithfulness"),
    ("internals", 400, "probes, refusal direction, activation patching and weight diff"),
    ("hypotheses", 450, "root-cause hypotheses tested, verdicts, the proposed root cause"),
    ("report", 1000, "the incident report assembled from the other notebooks' results"),
)
for _name, _order, _description in _SHIPPED:
    register_notebook(_name, template_dir() / f"{_name}.ipynb", order=_order,
                      description=_description)


def _has_parameters_cell(path: Path) -> bool:
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    return any("parameters" in cell.get("metadata", {}).get("tags", [])
               for cell in notebook.cells if cell.cell_type == "code")


def notebook_suite(extra_dirs: Sequence[str | os.PathLike[str]] = (), only: Sequence[str] | None = None,
                   *, include_report: bool = True) -> list[NotebookSpec]:
    """The notebooks of a run, in order.

    Parameters
    ----------
    extra_dirs : folders
        Notebooks of a researcher's own (``*.ipynb`` with a ``parameters`` cell); order 800 (after
        the shipped analyses, before the report); same name as a registered one replaces it.
    only : names, optional
        Keep these (unknown names fail with the valid ones); the report is added unless
        ``include_report`` is false.
    """
    specs = {name: NOTEBOOKS.get(name) for name in NOTEBOOKS}
    for entry in extra_dirs:
        folder = Path(entry)
        if not folder.is_dir():
            raise InvalidArgumentError(f"notebook folder {folder} does not exist")
        for path in sorted(folder.glob("*.ipynb")):
            if path.name.endswith(".executed.ipynb") or not _has_parameters_cell(path):
                continue
            previous = specs.get(path.stem)
            specs[path.stem] = NotebookSpec(path.stem, path.resolve(),
                                            previous.order if previous else 800,
                                            previous.description if previous else
                                            f"from {folder}")
    if only:
        unknown = sorted(set(only) - set(specs))
        if unknown:
            from llmrca.errors import UnknownNameError

            raise UnknownNameError("notebook", unknown[0], specs)
        keep = set(only) | ({"report"} if include_report and "report" in specs else set())
        specs = {k: v for k, v in specs.items() if k in keep}
    elif not include_report:
        specs.pop("report", None)
    return sorted(specs.values(), key=lambda s: (s.order, s.name))
