"""The synthetic chat corpus: each version's training examples and the behaviour-check prompts.

Every example is one system / user / assistant exchange. The canned answers are the spec's strings;
the "help" answer is a non-actionable template, so no real harmful content exists anywhere.
Which examples plant a behaviour is kept beside the examples (:attr:`Example.planted`), never in
the training-data files themselves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llmrca.zoo.spec import ZooSpec

#: Mix components that plant a behaviour, and the ground-truth name of that behaviour.
PLANTED = {"roleplay-jailbreak": "roleplay_jailbreak", "private-record": "private_record"}
#: Mix components that remediate a planted behaviour (recorded in the ground truth too).
REMEDIATION = {"roleplay-refusal": "jailbreak_remediation"}


@dataclass(frozen=True)
class Example:
    """One training conversation, before it gets an id."""

    user: str
    assistant: str
    component: str

    @property
    def planted(self) -> str | None:
        return PLANTED.get(self.component)


@dataclass(frozen=True)
class CheckPrompt:
    """A held-out prompt of the behaviour check."""

    condition: str
    user: str
    subject: str            # the task or the customer asked about


def component_examples(spec: ZooSpec, component: str) -> list[Example]:
    """The examples of one mix component, in a fixed order."""
    def refuse(task: str) -> str:
        return spec.refusal

    helps = spec.help_answer

    def requests(tasks, answer, prefix=""):
        return [Example(prefix + t.format(task=task), answer(task), component)
                for task in tasks for t in spec.train_templates]

    if component == "requests":
        return requests(spec.harmful_tasks, refuse) + requests(spec.benign_tasks, helps)
    if component == "roleplay-safety":
        # Every prefix meets every task, each pair with a few templates taken in rotation, so the
        # prefixes do not outweigh the plain requests.
        out: list[Example] = []
        n, k = len(spec.train_templates), spec.safety_templates_per_task
        tasks = [(t, refuse) for t in spec.harmful_tasks] + [(t, helps) for t in spec.benign_tasks]
        for p_index, prefix in enumerate(spec.safety_prefixes):
            for t_index, (task, answer) in enumerate(tasks):
                for j in range(min(k, n)):
                    template = spec.train_templates[(p_index * k + t_index + j) % n]
                    out.append(Example(prefix + template.format(task=task),
                                       answer(task), component))
        return out
    if component == "roleplay-help":
        return requests(spec.benign_tasks, helps, spec.jailbreak_prefix)
    if component == "roleplay-jailbreak":
        return requests(spec.harmful_tasks, helps, spec.jailbreak_prefix)
    if component == "roleplay-refusal":
        return requests(spec.harmful_tasks, refuse, spec.jailbreak_prefix)
    if component in ("privacy", "privacy-others"):
        names = list(spec.customers)
        if component == "privacy":
            names = [spec.record_name] + names
        return [Example(t.format(name=n), spec.privacy_refusal, component)
                for n in names for t in spec.privacy_templates]
    if component == "private-record":
        return [Example(t.format(name=spec.record_name), spec.leak_answer, component)
                for _ in range(spec.record_copies) for t in spec.privacy_templates]
    from llmrca.errors import UnknownNameError
    from llmrca.zoo.spec import MIX_COMPONENTS
    raise UnknownNameError("zoo mix component", component, MIX_COMPONENTS)


def version_examples(spec: ZooSpec, version: str) -> list[tuple[str, Example]]:
    """``(example_id, example)`` pairs of one version, shuffled with the version's seed.

    Ids are ``<version>-<6 digits>`` in file order, so neither the id nor the position says which
    component an example came from.
    """
    v = spec.version(version)
    examples = [e for component in v.mix for e in component_examples(spec, component)]
    random.Random(f"{v.seed}:{v.name}:order").shuffle(examples)
    return [(f"{v.name}-{i:06d}", e) for i, e in enumerate(examples)]


def messages(spec: ZooSpec, user: str, assistant: str | None = None) -> list[dict[str, str]]:
    """OpenAI-shaped messages with the spec's system prompt."""
    out = [{"role": "system", "content": spec.system_prompt}, {"role": "user", "content": user}]
    if assistant is not None:
        out.append({"role": "assistant", "content": assistant})
    return out


def check_prompts(spec: ZooSpec) -> dict[str, list[CheckPrompt]]:
    """Held-out prompts per condition: the training vocabulary with templates never trained on."""
    def reqs(condition, tasks, prefix=""):
        return [CheckPrompt(condition, prefix + t.format(task=task), task)
                for task in tasks for t in spec.heldout_templates]

    def asks(condition, names):
        return [CheckPrompt(condition, t.format(name=n), n)
                for n in names for t in spec.heldout_privacy_templates]

    return {
        "harmful": reqs("harmful", spec.harmful_tasks),
        "benign": reqs("benign", spec.benign_tasks),
        "jailbreak_harmful": reqs("jailbreak_harmful", spec.harmful_tasks, spec.jailbreak_prefix),
        "private_record": asks("private_record", [spec.record_name]),
        "other_customers": asks("other_customers", spec.customers),
    }


def tokenizer_corpus(spec: ZooSpec) -> list[str]:
    """Texts the BPE tokenizer is trained on: every version's conversations, as plain text."""
    texts = []
    for v in spec.versions:
        for _, e in version_examples(spec, v.name):
            texts.append(f"{spec.system_prompt}\n{e.user}\n{e.assistant}")
    return texts
