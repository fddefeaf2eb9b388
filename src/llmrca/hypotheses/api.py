"""Run an incident's hypotheses: gather the evidence, test each, correct, decide, rank, store."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmrca.hypotheses.kinds import HYPOTHESES, Outcome, _callable_name
from llmrca.hypotheses.result import HypothesisReport, HypothesisResult, load_hypotheses
from llmrca.hypotheses.spec import HypothesisSpec, default_specs, load_hypotheses_file
from llmrca.hypotheses.testing import decide_verdict

__all__ = ["evaluate", "investigate"]


def evaluate(outcomes: Sequence[tuple[str, float, Outcome]], *, alpha: float = 0.05,
             causes: Sequence[bool] | None = None,
             tiers: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Holm over the applicable hypotheses that have a p-value, the verdict of each, and the
    rank of the supported ones: causes first, each group by effect (largest first).

    Parameters
    ----------
    outcomes : sequence of (name, min_effect, Outcome)
    causes : sequence of bool, optional
        Per outcome, whether it is a claim about the cause (default: all are); the others
        (a guardrail gap) rank after every supported cause.
    tiers : sequence of int, optional
        Per outcome, its ranking tier (:attr:`~llmrca.hypotheses.kinds.HypothesisKind.tier`:
        0 a specific cause, 1 a localising cause such as ``version_regression``, 2 not a
        cause); overrides ``causes``. The supported ones rank by tier, then by effect.

    Returns
    -------
    list of dict
        ``name, adjusted_p, verdict, rank`` per outcome, in the order given.
    """
    from llmrca.stats import holm

    tested = [i for i, (_, _, o) in enumerate(outcomes)
              if o.applicable and not math.isnan(o.p_value)]
    adjusted = holm([outcomes[i][2].p_value for i in tested])
    adj = [math.nan] * len(outcomes)
    for i, p in zip(tested, adjusted):
        adj[i] = p
    out = []
    for (name, min_effect, o), p in zip(outcomes, adj):
        verdict = decide_verdict(o.effect, o.high, p, alpha=alpha, min_effect=min_effect,
                                 applicable=o.applicable)
        out.append({"name": name, "adjusted_p": p, "verdict": verdict, "rank": None})
    if tiers is not None:
        tier = [int(t) for t in tiers]
    else:
        tier = [0 if c else 2 for c in (causes if causes is not None else [True] * len(outcomes))]
    supported = sorted((i for i, r in enumerate(out) if r["verdict"] == "supported"),
                       key=lambda i: (tier[i], -outcomes[i][2].effect, i))
    for rank, i in enumerate(supported, start=1):
        out[i]["rank"] = rank
    return out


def _resolve_specs(hypotheses: Any, bundle: str | Path | None) -> list[HypothesisSpec]:
    if hypotheses is not None:
        specs = []
        for h in hypotheses:
            if isinstance(h, HypothesisSpec):
                specs.append(h)
            elif isinstance(h, str):
                specs.append(HypothesisSpec(kind=h))
            elif isinstance(h, dict):
                specs.append(HypothesisSpec(**h))
            else:
                from llmrca.errors import InvalidArgumentError

                raise InvalidArgumentError(f"a hypothesis is a kind name, a dict or a "
                                           f"HypothesisSpec; got {type(h).__name__}")
        return specs
    if bundle is not None:
        path = Path(bundle)
        path = path / "hypotheses.yaml" if path.is_dir() else path
        if path.exists():
            return load_hypotheses_file(path)
    return default_specs()


def _outcome_from_row(row: dict[str, Any]) -> Outcome:
    def num(key: str) -> float:
        value = row.get(key)
        return math.nan if value is None or math.isnan(float(value)) else float(value)
    return Outcome(effect=num("effect"), low=num("effect_low"), high=num("effect_high"),
                   p_value=num("p_value"), applicable=bool(row["applicable"]),
                   summary=str(row["summary"]), finding=dict(row.get("finding") or {}),
                   evidence=dict(row.get("evidence") or {}), method=str(row.get("method") or ""))


def investigate(store, incident_id: str, hypotheses: Sequence[Any] | None = None, *,
                deployed: str | None = None, previous: str | None = None, samples: int = 20,
                seed: int = 0, alpha: float = 0.05, judges: Sequence[str] | None = None,
                temperature: float = 1.0, max_new_tokens: int = 32, random_spans: int = 3,
                deletion_judges: Sequence[str] = ("same-as-incident", "refusal"),
                bundle: str | Path | None = None) -> HypothesisReport:
    """Test an incident's hypotheses end to end and store the verdicts.

    The evidence (replays on the deployed and previous versions, automatic segmentation and
    attribution on the deployed one, deletion replays, training-data search, guardrail rules)
    is gathered as the hypotheses ask for it (:class:`~llmrca.hypotheses.evidence.Evidence`),
    each cached in the store. A run whose every result is stored is read back without loading
    a model (its id hashes every test's inputs: version fingerprints, samples, seed, judges,
    interactions, parameters, the verdict rule).

    Parameters
    ----------
    hypotheses : sequence, optional
        Kind names, dicts (``kind``, ``name``, ``parameters``, ``min_effect``) or
        :class:`~llmrca.hypotheses.spec.HypothesisSpec`. Default: ``bundle``'s
        ``hypotheses.yaml`` when given and present, else every registered kind.
    deployed, previous : str, optional
        Default: the incident's deployed version and :func:`llmrca.triage.previous_version`.
    samples, seed, temperature, max_new_tokens, judges
        Replay settings (judges: the incident category's defaults when None).
    alpha : float
        Family-wise level of Holm's correction over the run's hypotheses.
    random_spans : int
        Control spans deleted per prompt by ``prompt_segment_cause``.
    deletion_judges : sequence of str
        Judges of the deletion replays (``prompt_segment_cause``, ``refusal_weakened``): does
        the model still produce the offending output (see
        :class:`~llmrca.hypotheses.evidence.Evidence`).

    Returns
    -------
    HypothesisReport
    """
    from llmrca import __version__, ids
    from llmrca.errors import InvalidArgumentError
    from llmrca.hypotheses.evidence import Evidence
    from llmrca.store.hypotheses import (
        HYPOTHESIS_RESULTS,
        latest_test_outcome,
        write_hypothesis_results,
    )
    from llmrca.store.replay import incident_record
    from llmrca.triage import previous_version

    if not 0.0 < alpha < 1.0:
        raise InvalidArgumentError(f"alpha must be in (0, 1); got {alpha}")
    record = incident_record(store, incident_id)
    deployed = deployed or record.get("deployed_model_version")
    if not isinstance(deployed, str) or not deployed:
        raise InvalidArgumentError(f"incident '{incident_id}' records no deployed version: "
                                   f"pass deployed=... (--versions DEPLOYED,PREVIOUS)")
    if previous is None:
        previous = previous_version(store, incident_id)
    specs = _resolve_specs(hypotheses, bundle)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"hypothesis names must be unique; got {', '.join(names)}")
    evidence = Evidence(store, incident_id, deployed=str(deployed), previous=previous,
                        samples=samples, seed=seed, temperature=temperature,
                        max_new_tokens=max_new_tokens, judges=judges,
                        random_spans=random_spans, deletion_judges=deletion_judges)
    identity = evidence.identity()
    recorded = [{k: _callable_name(v) for k, v in s.parameters.items()} for s in specs]
    test_ids = [ids.content_id({"kind": s.kind, "parameters": p, "inputs": identity})
                for s, p in zip(specs, recorded)]
    run_id = "hyp-" + ids.content_id({"incident_id": incident_id, "alpha": float(alpha),
                                      "ranking": "tier, then effect",
                                      "tests": [[s.name, t, s.threshold]
                                                for s, t in zip(specs, test_ids)]}, digits=24)
    if HYPOTHESIS_RESULTS.existing(store, [ids.content_id(run_id, s.name) for s in specs]) \
            == {ids.content_id(run_id, s.name) for s in specs}:
        report = load_hypotheses(store, run_id)
        return HypothesisReport(run_id=run_id, incident_id=incident_id, results=report.results,
                                alpha=alpha, info={"loaded": True, "computed": 0,
                                                   "cached": len(specs)})
    outcomes: list[tuple[str, float, Outcome]] = []
    computed = 0
    for spec, test_id in zip(specs, test_ids):
        row = latest_test_outcome(store, test_id)
        if row is not None:
            outcome = _outcome_from_row(row)
        else:
            outcome = HYPOTHESES.get(spec.kind).test(evidence, dict(spec.parameters))
            computed += 1
        outcomes.append((spec.name, spec.threshold, outcome))
    decisions = evaluate(outcomes, alpha=alpha,
                         tiers=[HYPOTHESES.get(s.kind).tier for s in specs])
    results = []
    for order, (spec, test_id, params, (_, threshold, o), d) in enumerate(
            zip(specs, test_ids, recorded, outcomes, decisions)):
        results.append(HypothesisResult(
            name=spec.name, kind=spec.kind, verdict=d["verdict"], effect=o.effect,
            effect_low=o.low, effect_high=o.high, p_value=o.p_value,
            adjusted_p=d["adjusted_p"], min_effect=threshold, alpha=float(alpha),
            rank=d["rank"], applicable=o.applicable, summary=o.summary, finding=o.finding,
            evidence=o.evidence, inputs={**identity, "order": order}, parameters=params,
            test_id=test_id, method=o.method))
    if not store.read_only:
        write_hypothesis_results(store, [
            {**{k: _nan_none(v) for k, v in r.to_dict().items()},
             "result_id": ids.content_id(run_id, r.name), "run_id": run_id,
             "incident_id": incident_id, "package_version": __version__} for r in results])
    return HypothesisReport(run_id=run_id, incident_id=incident_id, results=tuple(results),
                            alpha=alpha, info={"computed": computed,
                                               "cached": len(specs) - computed,
                                               "deployed": deployed, "previous": previous})


def _nan_none(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _nan_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_none(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
