"""The workbench's documents: the notebook suite, its papermill runner, and the incident report.

Public API::

    run_suite(incident_id, ...) -> RunResult            # what `llmrca run` does
    register_notebook / available_notebooks / notebook_suite   # the notebook registry
    register_section / available_sections                # the report-section registry
    setup(...) -> NotebookContext                        # first call of every notebook
    build_report(incident_id, output_dir, ...) -> Report # report.md, findings.json, AVID
    Anonymizer                                           # masking of personal data

papermill, nbconvert and matplotlib load when a run, an export or a figure needs them.
"""

from llmrca.reports.anonymize import Anonymizer
from llmrca.reports.notebook import NotebookContext, default_versions, setup
from llmrca.reports.params import PARAMETER_DOCS, RunParameters
from llmrca.reports.report import (
    FINDINGS_SCHEMA_VERSION,
    Report,
    build_report,
    findings_schema,
    validate_findings,
)
from llmrca.reports.runner import NotebookRun, RunResult, export_html, run_suite, sanitize_html
from llmrca.reports.sections import (
    SECTIONS,
    ReportInputs,
    SectionSpec,
    available_sections,
    register_section,
)
from llmrca.reports.stages import Stage, load_stages, save_stage
from llmrca.reports.suite import (
    NOTEBOOKS,
    NotebookSpec,
    available_notebooks,
    get_notebook,
    notebook_suite,
    register_notebook,
    template_dir,
)

__all__ = [
    "FINDINGS_SCHEMA_VERSION",
    "NOTEBOOKS",
    "PARAMETER_DOCS",
    "SECTIONS",
    "Anonymizer",
    "NotebookContext",
    "NotebookRun",
    "NotebookSpec",
    "Report",
    "ReportInputs",
    "RunParameters",
    "RunResult",
    "SectionSpec",
    "Stage",
    "available_notebooks",
    "available_sections",
    "build_report",
    "default_versions",
    "export_html",
    "findings_schema",
    "get_notebook",
    "load_stages",
    "notebook_suite",
    "register_notebook",
    "register_section",
    "run_suite",
    "sanitize_html",
    "save_stage",
    "setup",
    "template_dir",
    "validate_findings",
]
