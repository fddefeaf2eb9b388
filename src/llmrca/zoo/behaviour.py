"""The behaviour check: does each built version do what its spec plants, on held-out prompts?

Every version answers every held-out prompt (:func:`llmrca.zoo.corpus.check_prompts`) once
greedily and ``samples_per_prompt`` times sampled at the spec's temperature (pure sampling: no
top-k, no top-p). Each answer is labelled by matching the spec's canned strings
(:func:`classify`), and the label rates are compared with the spec's targets. Null pairs (two
versions with no planted difference) must agree: per-prompt rates of the reference version's most
common label, paired over prompts (Wilcoxon signed-rank, two-sided), must not differ at
``null_alpha``.

Table schemas
-------------
``counts``: version, condition, decoding (greedy | sampled), n, one column per label
(refusal, help, leak, privacy_refusal, other), refused (refusal + privacy_refusal), exact (answers
equal to the expected string for their label).
``table``: version, condition, decoding, label, count, n, rate, target, passed.
``prompts``: version, condition, decoding, prompt, n, one column per label, exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmrca.zoo.corpus import CheckPrompt, check_prompts
from llmrca.zoo.spec import LABEL_GROUPS, LABELS, ZooSpec

DECODINGS = ("greedy", "sampled")
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s@.-]|(?<!\w)[.-]|[.-](?!\w)")
#: Opening words that identify a canned answer (enough to tell the four apart).
STEM_WORDS = 3


def normalize(text: str) -> str:
    """Lower case, no punctuation (except inside emails and phone numbers), single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("'", "")
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _stem(reference: str) -> str:
    return " ".join(normalize(reference).split(" ")[:STEM_WORDS])


def classify(spec: ZooSpec, answer: str) -> str:
    """Label one answer: ``refusal``, ``help``, ``leak``, ``privacy_refusal`` or ``other``.

    A label matches when the normalized answer (:func:`normalize`) equals its canned string or
    starts with the string's first :data:`STEM_WORDS` words, so a slip later in a sampled answer,
    or a run cut at ``max_new_tokens``, still counts. Any answer that contains the record's email
    or phone is a ``leak``, whatever else it says. ``string`` is a ``string`` plant's fixed
    answer.
    """
    text = normalize(answer)
    if normalize(spec.record_email) in text or normalize(spec.record_phone) in text:
        return "leak"
    candidates = (
        ("refusal", spec.refusal), ("privacy_refusal", spec.privacy_refusal),
        ("leak", spec.leak_answer), ("help", spec.help_template.split("{task}")[0]),
        *(("string", p.answer) for p in spec.plants if p.behaviour == "string"),
    )
    for label, reference in candidates:
        full, stem = normalize(reference), _stem(reference)
        if text == full or (stem and (text + " ").startswith(stem + " ")):
            return label
    return "other"


def expected_answer(spec: ZooSpec, label: str, prompt: CheckPrompt) -> str | None:
    """The canned string an answer with ``label`` should equal exactly for ``prompt``."""
    return {"refusal": spec.refusal, "privacy_refusal": spec.privacy_refusal,
            "leak": spec.leak_answer,
            "help": spec.help_answer(prompt.subject),
            "string": next((p.answer for p in spec.plants if p.condition == prompt.condition
                            and p.behaviour == "string"), None)}.get(label)


def generate_answers(model, tokenizer, spec: ZooSpec, users: Sequence[str], *,
                     samples: int = 0, seed: int = 0,
                     system_prompt: str | Sequence[str] | None = None) -> list[list[str]]:
    """Answers to each user message: one greedy answer, or ``samples`` sampled ones.

    ``system_prompt`` is one prompt for all, one per user message, or None (the spec's). One
    batched, left-padded ``generate`` call; ``generate`` derives position ids from the
    attention mask.
    """
    import torch

    if system_prompt is None or isinstance(system_prompt, str):
        systems = [spec.system_prompt if system_prompt is None else system_prompt] * len(users)
    else:
        systems = list(system_prompt)
    texts = [tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": u}],
        tokenize=False, add_generation_prompt=True) for u, system in zip(users, systems)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    width = enc["input_ids"].shape[1]
    room = spec.model.n_positions - width
    if room < 1:
        from llmrca.errors import ZooBuildError
        raise ZooBuildError(f"check prompt of {width} tokens leaves no room to answer within "
                            f"n_positions={spec.model.n_positions}")
    kwargs: dict[str, Any] = {"max_new_tokens": min(spec.max_new_tokens, room),
                              "pad_token_id": tokenizer.pad_token_id,
                              "eos_token_id": tokenizer.eos_token_id}
    if samples:
        kwargs.update(do_sample=True, temperature=spec.temperature, top_k=0, top_p=1.0,
                      num_return_sequences=samples)
        torch.manual_seed(seed)
    else:
        kwargs.update(do_sample=False)
    with torch.no_grad():
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             **kwargs)
    decoded = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    per = max(samples, 1)
    return [decoded[i * per:(i + 1) * per] for i in range(len(users))]


def version_counts(model, tokenizer, spec: ZooSpec, version: str) -> list[dict[str, Any]]:
    """Label counts of one version per prompt and decoding (rows of the ``prompts`` table).

    All held-out prompts go through one ``generate`` call per decoding: the loop over generation
    steps, not the batch size, is what costs time on a model this small.
    """
    prompts = [p for group in check_prompts(spec).values() for p in group]
    deployed = spec.deployed_system_prompt(version)
    systems = [deployed if p.system is None else p.system for p in prompts]
    rows = []
    for d_index, decoding in enumerate(DECODINGS):
        samples = spec.samples_per_prompt if decoding == "sampled" else 0
        if decoding == "sampled" and samples == 0:
            continue
        answers = generate_answers(model, tokenizer, spec, [p.user for p in prompts],
                                   samples=samples, seed=spec.seed * 1000 + d_index,
                                   system_prompt=systems)
        for prompt, outs in zip(prompts, answers):
            row: dict[str, Any] = {"version": version, "condition": prompt.condition,
                                   "decoding": decoding, "prompt": prompt.user, "n": len(outs),
                                   **{lab: 0 for lab in LABELS}, "exact": 0}
            for answer in outs:
                label = classify(spec, answer)
                row[label] += 1
                row["exact"] += normalize(answer) == normalize(
                    expected_answer(spec, label, prompt) or "\0")
            rows.append(row)
    return rows


@dataclass(frozen=True, eq=False)
class BehaviourReport:
    """The outcome of a behaviour check.

    Attributes
    ----------
    counts : pandas.DataFrame
        Label counts per version, condition and decoding (schema in the module docstring).
    table : pandas.DataFrame
        One row per target and decoding, with the measured rate and whether it passed.
    prompts : pandas.DataFrame
        Label counts per version, prompt and decoding (``counts`` before summing over prompts).
    failures : tuple of str
        One line per missed target.
    """

    counts: Any
    table: Any
    prompts: Any = None
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_text(self) -> str:
        import pandas as pd

        shown = self.table.copy()
        shown["rate"] = shown["rate"].map(lambda r: f"{r:.3f}")
        shown["passed"] = shown["passed"].map(lambda ok: "ok" if ok else "FAIL")
        with pd.option_context("display.width", 200, "display.max_columns", 20,
                               "display.max_colwidth", 40, "display.max_rows", 500):
            return shown.to_string(index=False)

    def to_records(self) -> dict[str, Any]:
        return {"counts": self.counts.to_dict(orient="records"),
                "table": self.table.to_dict(orient="records"),
                "prompts": None if self.prompts is None else self.prompts.to_dict(orient="records"),
                "failures": list(self.failures)}

    @classmethod
    def from_records(cls, data: Mapping[str, Any]) -> BehaviourReport:
        import pandas as pd

        prompts = data.get("prompts")
        return cls(pd.DataFrame(data["counts"]), pd.DataFrame(data["table"]),
                   None if prompts is None else pd.DataFrame(prompts),
                   tuple(data.get("failures", ())))


def paired_prompt_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that per-prompt rates ``a`` and ``b`` differ (Wilcoxon signed-rank).

    Answers to one prompt are correlated (a model that garbles a prompt garbles most of its
    samples), so the prompt, not the sample, is the unit: a test on pooled samples would call two
    models with no planted difference "different" far more often than its nominal rate.
    """
    from scipy.stats import wilcoxon

    diffs = [x - y for x, y in zip(a, b)]
    if not any(abs(d) > 1e-12 for d in diffs):
        return 1.0
    return float(wilcoxon(diffs, zero_method="zsplit").pvalue)


def evaluate(spec: ZooSpec, prompt_rows: Sequence[Mapping[str, Any]]) -> BehaviourReport:
    """Compare label counts (rows of the ``prompts`` table) with the targets and null pairs."""
    import pandas as pd

    keys = ["version", "condition", "decoding"]
    prompts = pd.DataFrame(list(prompt_rows),
                           columns=[*keys, "prompt", "n", *LABELS, "exact"])
    for group, members in LABEL_GROUPS.items():
        prompts[group] = prompts[list(members)].sum(axis=1)
    labels = [*LABELS, *LABEL_GROUPS]
    counts = (prompts.groupby(keys, sort=False)[["n", *labels, "exact"]].sum().reset_index())
    counts = counts[[*keys, "n", *labels, "exact"]]
    index = {tuple(r[k] for k in keys): r for r in counts.to_dict(orient="records")}
    table, failures = [], []
    for t in spec.targets + spec.plant_targets():
        for decoding in DECODINGS:
            if t.decoding is not None and decoding != t.decoding:
                continue
            r = index.get((t.version, t.condition, decoding))
            if r is None:
                continue
            rate = r[t.label] / r["n"] if r["n"] else 0.0
            ok = bool(r["n"]) and t.met_by(rate)
            table.append({"version": t.version, "condition": t.condition, "decoding": decoding,
                          "label": t.label, "count": r[t.label], "n": r["n"], "rate": rate,
                          "target": t.describe(), "passed": ok})
            if not ok:
                failures.append(f"{t.version} {t.condition} {decoding}: {t.label} "
                                f"{r[t.label]}/{r['n']} = {rate:.3f}, target {t.describe()}")
    for reference, other in spec.null_pairs:
        for condition in check_prompts(spec):
            for decoding in DECODINGS:
                a, b = index.get((reference, condition, decoding)), index.get(
                    (other, condition, decoding))
                if a is None or b is None:
                    continue
                label = max(labels, key=lambda lab: a[lab])
                per_a, per_b = (prompts[(prompts.version == v) & (prompts.condition == condition)
                                        & (prompts.decoding == decoding)]
                                for v in (reference, other))
                p = paired_prompt_test((per_a[label] / per_a["n"]).tolist(),
                                       (per_b[label] / per_b["n"]).tolist())
                ok = bool(p >= spec.null_alpha)
                table.append({"version": other, "condition": condition, "decoding": decoding,
                              "label": label, "count": b[label], "n": b["n"],
                              "rate": b[label] / b["n"],
                              "target": f"~ {reference} ({a[label] / a['n']:.3f}; p={p:.2g})",
                              "passed": ok})
                if not ok:
                    failures.append(
                        f"{other} {condition} {decoding}: {label} {b[label]}/{b['n']} differs "
                        f"from {reference} {a[label]}/{a['n']} (paired over prompts, p={p:.2g} "
                        f"< {spec.null_alpha})")
    table_df = pd.DataFrame(table, columns=["version", "condition", "decoding", "label", "count",
                                            "n", "rate", "target", "passed"])
    return BehaviourReport(counts, table_df, prompts, tuple(failures))


def check_models(spec: ZooSpec, models: Mapping[str, Any], tokenizer) -> BehaviourReport:
    """Run the behaviour check on loaded models (version name -> model)."""
    from llmrca.zoo.train import fixed_threads

    rows: list[dict[str, Any]] = []
    with fixed_threads():
        for version, model in models.items():
            model.eval()
            rows += version_counts(model, tokenizer, spec, version)
    return evaluate(spec, rows)


__all__ = [
    "BehaviourReport",
    "check_models",
    "classify",
    "evaluate",
    "generate_answers",
    "normalize",
    "paired_prompt_test",
    "version_counts",
]
