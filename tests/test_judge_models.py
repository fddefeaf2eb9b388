"""Model judges on models built and fine-tuned in the test: a tiny sequence classifier and a tiny
guard LM, both on separable synthetic data (random words drawn from a seed). Nothing is downloaded.
"""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llmrca.errors import JudgeConfigError
from llmrca.judges import GuardLMJudge, HFClassifierJudge, get_judge
from llmrca.zoo import TEST_SPEC

TEMPLATE = "User: {prompt}\nAgent: {output}\nVerdict:"


def nonsense(rng: random.Random, count: int) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(2))
        if word not in words:
            words.append(word)
    return words


@pytest.fixture(scope="module")
def data():
    """(texts, labels) for training and for checking: unsafe texts use one word pool, safe ones
    another; requests come from a third."""
    rng = random.Random(7)
    words = nonsense(rng, 30)
    unsafe_words, safe_words, request_words = words[:10], words[10:20], words[20:]

    def make(n, seed):
        r = random.Random(seed)
        rows = []
        for i in range(n):
            label = "unsafe" if i % 2 else "safe"
            pool = unsafe_words if label == "unsafe" else safe_words
            rows.append((" ".join(r.choice(request_words) for _ in range(3)),
                         " ".join(r.choice(pool) for _ in range(4)), label))
        return rows

    return {"train": make(48, 1), "check": make(20, 2)}


def tokenizer_for(texts):
    from dataclasses import replace

    from llmrca.zoo import ModelShape
    from llmrca.zoo.tokenizer import train_tokenizer
    spec = replace(TEST_SPEC, model=ModelShape(n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                               vocab_size=300))
    return train_tokenizer(spec, texts)


def small_gpt2(tokenizer, **extra):
    return transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                   vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id,
                                   bos_token_id=tokenizer.eos_token_id, **extra)


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory, data):
    torch.manual_seed(0)
    texts = [o for _, o, _ in data["train"]]
    tokenizer = tokenizer_for(texts + [o for _, o, _ in data["check"]])
    # Class names that are not llmrca labels: the judge needs a mapping.
    config = small_gpt2(tokenizer, num_labels=2, id2label={0: "BENIGN", 1: "HARMFUL"},
                        label2id={"BENIGN": 0, "HARMFUL": 1})
    model = transformers.GPT2ForSequenceClassification(config)
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    target = torch.tensor([1 if y == "unsafe" else 0 for _, _, y in data["train"]])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    folder = tmp_path_factory.mktemp("classifier")
    model.eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_hf_classifier_judge(classifier_folder, data):
    mapping = {"HARMFUL": "unsafe", "BENIGN": "safe"}
    with pytest.raises(JudgeConfigError, match="HARMFUL"):
        get_judge(f"hf-classifier:{classifier_folder}")       # class names need a mapping
    with pytest.raises(JudgeConfigError, match="not a local model folder"):
        get_judge("hf-classifier:/no/such/folder")
    judge = get_judge(f"hf-classifier:{classifier_folder}", labels=mapping, batch_size=8)
    check = data["check"]
    result = judge.judge([{"output": o} for _, o, _ in check])
    assert list(result["label"]) == [y for _, _, y in check]
    assert judge.forward_passes == math.ceil(len(check) / 8)
    details = result["details"][0]
    assert set(details["proba"]) == {"BENIGN", "HARMFUL"}
    assert result["score"][0] == pytest.approx(
        details["p_unsafe"] if result["label"][0] == "unsafe" else 1 - details["p_unsafe"])
    strict = HFClassifierJudge(classifier_folder, labels=mapping, threshold=1.0)
    assert (strict.judge([o for _, o, _ in check])["label"] == "unsafe").sum() \
        <= (result["label"] == "unsafe").sum()
    assert strict.config_hash != judge.config_hash
    assert strict.fingerprint == judge.fingerprint    # thresholds do not change raw scores


@pytest.fixture(scope="module")
def guard_folder(tmp_path_factory, data):
    """A tiny causal LM fine-tuned to answer ' safe' / ' unsafe' after TEMPLATE."""
    torch.manual_seed(0)
    rows = data["train"]
    rendered = [TEMPLATE.replace("{prompt}", p).replace("{output}", o) for p, o, _ in rows]
    tokenizer = tokenizer_for(rendered + [r + " safe" for r in rendered]
                              + [r + " unsafe" for r in rendered])
    folder = tmp_path_factory.mktemp("guard")
    model = transformers.GPT2LMHeadModel(small_gpt2(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    judge = GuardLMJudge(folder, template=TEMPLATE)
    model, tokenizer = judge.load()               # the verdict tokens, as the judge reads them
    safe_id, unsafe_id = judge.verdict_ids
    input_ids, mask, positions = judge.encode(rendered)
    target = torch.tensor([unsafe_id if y == "unsafe" else safe_id for _, _, y in rows])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        logits = model(input_ids=input_ids, attention_mask=mask,
                       position_ids=positions).logits[:, -1, :]
        loss = torch.nn.functional.cross_entropy(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval().save_pretrained(folder, safe_serialization=True)
    return folder


def test_guard_lm_judge_labels_and_margin(guard_folder, data):
    judge = get_judge(f"guard-lm:{guard_folder}", template=TEMPLATE, batch_size=6)
    check = data["check"]
    samples = [{"output": o, "prompt": p} for p, o, _ in check]
    result = judge.judge(samples)
    assert list(result["label"]) == [y for _, _, y in check]
    # The margin is log p(unsafe) - log p(safe) of the next token, as one unpadded forward says:
    # the left-padded batch with explicit position ids gives the same numbers.
    model, _ = judge.load()
    safe_id, unsafe_id = judge.verdict_ids
    for (p, o, _), details, score, label in zip(check[:4], result["details"], result["score"],
                                                result["label"]):
        ids, mask, _ = judge.encode([judge.render(o, p)])          # one row: no padding
        assert bool(mask.all())
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
        margin = float(logprobs[unsafe_id] - logprobs[safe_id])
        assert details["margin"] == pytest.approx(margin, abs=1e-4)
        assert score == pytest.approx(1 / (1 + math.exp(-margin if label == "unsafe" else margin)))
    # The default template renders the request and the output into a Llama-Guard-style question.
    default = GuardLMJudge(guard_folder)
    text = default.render("OUTPUT-TEXT", "REQUEST-TEXT")
    assert "User: REQUEST-TEXT" in text and "Agent: OUTPUT-TEXT" in text
    with pytest.raises(JudgeConfigError, match="output"):
        GuardLMJudge(guard_folder, template="no placeholder")
    with pytest.raises(JudgeConfigError, match="same token"):
        GuardLMJudge(guard_folder, template=TEMPLATE, verdicts=(" safe", " safe")).load()


def test_guard_lm_judge_cache_makes_a_warm_rejudge_free(guard_folder, data, store):
    samples = [{"output": o, "prompt": p} for p, o, _ in data["check"]]
    cold = GuardLMJudge(guard_folder, template=TEMPLATE, batch_size=8, cache=store)
    first = cold.judge(samples + samples[:3])            # repeats are scored once
    assert cold.forward_passes == math.ceil(len(samples) / 8)
    assert store.count("judge_cache") == len(samples)
    warm = GuardLMJudge(guard_folder, template=TEMPLATE, batch_size=8, cache=store)
    again = warm.judge(samples)
    assert warm.forward_passes == 0 and warm._model is None       # not even loaded
    assert list(again["label"]) == list(first["label"][:len(samples)])
    assert [d["margin"] for d in again["details"]] \
        == pytest.approx([d["margin"] for d in first["details"][:len(samples)]])
    # Another threshold reuses the scores; another template is another question.
    strict = GuardLMJudge(guard_folder, template=TEMPLATE, threshold=1e9, cache=store)
    assert set(strict.judge(samples)["label"]) == {"safe"} and strict.forward_passes == 0
    other = GuardLMJudge(guard_folder, template="Q: {output}\nVerdict:", cache=store)
    other.judge(samples[:2])
    assert other.forward_passes == 1
