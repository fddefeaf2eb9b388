"""The incident report: built from the notebooks' results, written as Markdown, HTML fragments
(shown by the report notebook, rendered to ``report.html`` by the runner), ``findings.json`` and
an AVID-style export.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from llmrca.reports.anonymize import Anonymizer
from llmrca.reports.document import (
    Figure,
    Section,
    Table,
    render_html,
    render_markdown,
    render_section_html,
)
from llmrca.reports.sections import ReportInputs, available_sections
from llmrca.reports.stages import load_stages, to_jsonable

__all__ = ["FINDINGS_SCHEMA_VERSION", "Report", "build_report", "findings_schema",
           "validate_findings"]

#: Version of ``findings.json`` (``schema_version``); the schema is ``findings.schema.json``.
FINDINGS_SCHEMA_VERSION = "1.0"
#: Packages whose versions the provenance records.
PROVENANCE_PACKAGES = ("llmrca", "torch", "transformers", "tokenizers", "duckdb", "pandas",
                       "numpy", "scipy", "matplotlib", "papermill", "nbconvert", "ipykernel")
#: AVID taxonomy codes per incident category (SEP view).
AVID_SEP: dict[str, list[dict[str, str]]] = {
    "jailbreak": [{"id": "S0400", "name": "Model Bypass"},
                  {"id": "S0403", "name": "Adversarial Example"}],
    "prompt-injection": [{"id": "S0400", "name": "Model Bypass"}],
    "privacy": [{"id": "P0300", "name": "Privacy"}, {"id": "S0301", "name": "Information Leak"}],
    "harmful-content": [{"id": "P0400", "name": "Safety"}],
    "bias": [{"id": "E0100", "name": "Bias/Discrimination"}],
}
_AVID_DOMAIN = {"S": "Security", "P": "Performance", "E": "Ethics"}


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PROVENANCE_PACKAGES` (absent ones left out)."""
    found = {}
    for name in PROVENANCE_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from llmrca import __version__

    found["llmrca"] = __version__
    found["python"] = platform.python_version()
    return found


@dataclass
class Report:
    """The assembled report.

    Attributes
    ----------
    title : str
    sections : list of Section
    inputs : ReportInputs
    anonymizer : Anonymizer or None
        Set when the report is anonymized: every export passes through it.
    created_at : str
    """

    title: str
    sections: list[Section]
    inputs: ReportInputs
    anonymizer: Anonymizer | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    # -- renderings -----------------------------------------------------------------------------
    def markdown(self) -> str:
        return render_markdown(self.title, self.sections)

    def html(self) -> str:
        return render_html(self.title, self.sections)

    def display(self) -> None:
        """Show the report in a notebook, one HTML output per section (escaped; figures as
        data URIs inside it)."""
        from IPython.display import HTML, display

        from llmrca.reports.document import escape_html

        display(HTML(f"<h1>{escape_html(self.title)}</h1>"))
        for section in self.sections:
            display(HTML(render_section_html(section)))

    # -- machine-readable -----------------------------------------------------------------------
    def findings(self) -> dict[str, Any]:
        """``findings.json`` (see ``findings.schema.json``)."""
        inputs = self.inputs
        record = inputs.record
        triage = inputs.stage("triage")
        reproduction = inputs.stage("reproduction")
        comparison = inputs.stage("comparison")
        rates = []
        if reproduction is not None:
            table = reproduction.table("version_rates")
            for row in table.to_dict("records"):
                rates.append({k: row.get(k) for k in ("model_version", "variant", "k", "n",
                                                       "rate", "low", "high", "method")
                              if k in row})
        document: dict[str, Any] = {
            "schema_version": FINDINGS_SCHEMA_VERSION,
            "incident": {k: record.get(k) for k in (
                "title", "category", "severity", "status", "detected_at", "detection_source",
                "deployed_model_version")} | {"id": inputs.incident_id},
            "run": {"run_id": inputs.provenance.get("run_id"), "created_at": self.created_at,
                    "notebooks": inputs.provenance.get("notebooks", []),
                    "parameters": inputs.parameters,
                    "anonymized": self.anonymizer is not None},
            "triage": None if triage is None else {
                "proposed_category": triage.data.get("classification", {}).get("category"),
                "proposed_severity": triage.data.get("classification", {}).get("severity"),
                "category_rule": triage.data.get("classification", {}).get("category_rule"),
                "severity_rule": triage.data.get("classification", {}).get("severity_rule"),
                "signature": triage.data.get("signature"),
                "scope": triage.data.get("scope_totals", {}),
                "containment": triage.table("containment").to_dict("records")},
            "reproduction": None if reproduction is None else {
                "replay_run_id": reproduction.data.get("run_id"),
                "judges": reproduction.data.get("judges", []),
                "samples": reproduction.data.get("samples"),
                "reproduces_on": reproduction.data.get("reproduces_on", []),
                "not_on": reproduction.data.get("not_on", []),
                "rates": rates},
            "comparison": None if comparison is None else {
                "replay_run_id": comparison.data.get("run_id"),
                "mean_logprob": comparison.table("logprob_summary").to_dict("records"),
                "divergence": comparison.table("divergence").to_dict("records")},
            "root_cause": inputs.findings.get("root_cause"),
            "sections": [s.name for s in self.sections],
            "provenance": inputs.provenance,
        }
        document["avid"] = self.avid()
        document = to_jsonable(document)
        return self._mask(document)

    def avid(self) -> dict[str, Any]:
        """An AVID-style report (``affects``, ``problemtype``, ``metrics``, ``impact``,
        ``references``)."""
        inputs = self.inputs
        record = inputs.record
        category = str(record.get("category") or "other")
        sep = AVID_SEP.get(category, [])
        reproduction = inputs.stage("reproduction")
        metrics: list[dict[str, Any]] = []
        if reproduction is not None:
            for row in reproduction.table("version_rates").to_dict("records"):
                metrics.append({
                    "name": "reproduction rate",
                    "detection_method": {"type": "Significance Test",
                                         "name": str(row.get("method") or "wilson")},
                    "results": {"model_version": row.get("model_version"),
                                "variant": row.get("variant"), "k": row.get("k"),
                                "n": row.get("n"), "rate": row.get("rate"),
                                "low": row.get("low"), "high": row.get("high")}})
        versions = sorted({m["results"]["model_version"] for m in metrics}) or \
            [record.get("deployed_model_version")]
        return to_jsonable({
            "data_type": "AVID",
            "data_version": "0.2",
            "metadata": {"report_id": f"llmrca-{inputs.incident_id}"},
            "affects": {"developer": [], "deployer": [],
                        "artifacts": [{"type": "Model", "name": v} for v in versions if v]},
            "problemtype": {"classof": "LLM Evaluation", "type": "Issue",
                            "description": {"lang": "eng", "value": str(record.get("title"))}},
            "metrics": metrics,
            "references": [{"type": "source", "label": f"llmrca incident {inputs.incident_id}",
                            "url": f"llmrca://incidents/{inputs.incident_id}"}],
            "description": {"lang": "eng", "value": " ".join(str(record.get("summary") or
                                                                 "").split())},
            "impact": {"avid": {
                "risk_domain": sorted({_AVID_DOMAIN[c["id"][0]] for c in sep}),
                "sep_view": sep, "lifecycle_view": [{"id": "L06", "name": "Deployment"}],
                "taxonomy_version": "0.2"}},
            "reported_date": str(record.get("detected_at") or "")[:10] or None,
        })

    def _mask(self, value: Any) -> Any:
        return self.anonymizer.mask_value(value) if self.anonymizer else value

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """Write ``report.md``, ``figures/*.png``, ``findings.json`` and ``avid.json``."""
        folder = Path(output_dir)
        (folder / "figures").mkdir(parents=True, exist_ok=True)
        for section in self.sections:
            for block in section.blocks:
                if isinstance(block, Figure) and block.png:
                    (folder / "figures" / f"{block.name}.png").write_bytes(block.png)
        paths = {"report.md": folder / "report.md", "findings.json": folder / "findings.json",
                 "avid.json": folder / "avid.json"}
        paths["report.md"].write_text(self.markdown(), encoding="utf-8")
        findings = self.findings()
        validate_findings(findings)
        paths["findings.json"].write_text(json.dumps(findings, indent=2, ensure_ascii=False),
                                          encoding="utf-8")
        paths["avid.json"].write_text(json.dumps(findings["avid"], indent=2,
                                                 ensure_ascii=False), encoding="utf-8")
        return paths


def _root_cause_findings(inputs: Any) -> dict[str, Any] | None:
    """The newest hypothesis run: proposed root cause, contributing factors, every verdict."""
    if inputs.store is None:
        return None
    from llmrca.reports.sections import latest_hypotheses

    report = latest_hypotheses(inputs.store, inputs.incident_id)
    if report is None:
        return None
    root = report.root_cause
    return {"hypothesis_run_id": report.run_id, "alpha": report.alpha,
            "proposed": None if root is None else root.name,
            "contributing": [r.name for r in report.contributing],
            "conclusion": report.conclusion(),
            "hypotheses": [{"name": r.name, "kind": r.kind, "verdict": r.verdict,
                            "rank": r.rank, "effect": r.effect, "effect_low": r.effect_low,
                            "effect_high": r.effect_high, "p_value": r.p_value,
                            "adjusted_p": r.adjusted_p, "min_effect": r.min_effect,
                            "summary": r.summary, "finding": r.finding,
                            "evidence": r.evidence} for r in report.results]}


def _mask_sections(sections: list[Section], anonymizer: Anonymizer) -> list[Section]:
    from dataclasses import replace

    from llmrca.reports.document import Bullets, Text

    masked = []
    for section in sections:
        blocks: list[Any] = []
        for block in section.blocks:
            if isinstance(block, Text):
                block = Text(anonymizer.mask(block.text))
            elif isinstance(block, Bullets):
                block = Bullets(tuple(anonymizer.mask(i) for i in block.items))
            elif isinstance(block, Table):
                block = replace(block, frame=anonymizer.mask_frame(block.frame),
                                caption=anonymizer.mask(block.caption))
            blocks.append(block)
        masked.append(replace(section, blocks=tuple(blocks)))
    return masked


def build_report(incident_id: str, output_dir: str | Path, *, store: Any = None,
                 parameters: dict[str, Any] | None = None, anonymize: bool = False,
                 run_id: str | None = None) -> Report:
    """Assemble the report from the stage results under ``output_dir`` and the store's record.

    ``store`` (open, read-only is enough) gives the incident record and verification results;
    without one the record comes from the triage notebook's results.
    """
    from llmrca.errors import NotFoundError

    stages = load_stages(output_dir)
    record: dict[str, Any] = {}
    if store is not None:
        from llmrca.store.queries import incident_summary

        record = incident_summary(store, incident_id).record
    elif "triage" in stages:
        record = dict(stages["triage"].data.get("record", {}))
    if not record:
        raise NotFoundError(f"no record of incident '{incident_id}': open a store or run the "
                            f"triage notebook first")
    record = to_jsonable(record)
    models: dict[str, str] = {}
    runs = []
    for name, stage in stages.items():
        for version, fingerprint in (stage.data.get("fingerprints") or {}).items():
            models[version] = fingerprint
        if stage.data.get("run_id"):
            runs.append({"notebook": name, "replay_run_id": stage.data["run_id"]})
    parameters = dict(parameters or {})
    provenance = {
        "run_id": run_id, "notebooks": sorted(stages), "seed": parameters.get("seed"),
        "samples": parameters.get("samples"),
        "models": [{"model_version": k, "fingerprint": v} for k, v in sorted(models.items())],
        "packages": package_versions(), "runs": runs,
        "interpreter": sys.executable if not anonymize else "(withheld)",
    }
    inputs = ReportInputs(incident_id=incident_id, record=record, stages=stages,
                          parameters=to_jsonable(parameters), store=store,
                          provenance=provenance)
    # Read now: the store may be closed by the time findings.json is written.
    inputs.findings["root_cause"] = _root_cause_findings(inputs)
    sections = []
    for spec in available_sections():
        blocks = spec.build(inputs)
        if blocks is not None:
            sections.append(Section(spec.name, spec.title, tuple(blocks)))
    anonymizer = None
    title = f"Incident report {incident_id}: {record.get('title', '')}"
    if anonymize:
        anonymizer = Anonymizer()
        texts: list[str] = [title, *Anonymizer.strings(record)]
        for stage in stages.values():
            texts += list(Anonymizer.strings(stage.data))
            for table in stage.tables.values():
                texts += [v for v in table.to_numpy().ravel() if isinstance(v, str)]
        anonymizer.learn(texts)
        sections = _mask_sections(sections, anonymizer)
        title = anonymizer.mask(title)
        inputs.record = anonymizer.mask_value(record)
    return Report(title=title, sections=sections, inputs=inputs, anonymizer=anonymizer)


def findings_schema() -> dict[str, Any]:
    """The JSON Schema of ``findings.json`` (shipped as ``llmrca/reports/findings.schema.json``)."""
    text = (resources.files("llmrca") / "reports" / "findings.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_findings(document: dict[str, Any]) -> None:
    """Check a findings document against the schema (``jsonschema``, which nbformat needs).

    Raises
    ------
    ValidationError
        The first violation, with its JSON path as the field.
    """
    import jsonschema

    from llmrca.errors import ValidationError

    validator = jsonschema.Draft202012Validator(findings_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise ValidationError("findings.json", None,
                              ".".join(map(str, first.absolute_path)) or None, first.message)
