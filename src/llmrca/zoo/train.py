"""Training one version: a GPT-2 from scratch or a fine-tune of its parent, deterministically.

Determinism on one machine comes from fixed seeds (initialisation, batch order), no dropout, and a
fixed number of CPU threads while training (:data:`TRAIN_THREADS`): matrix products can sum in a
different order on a different thread count.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from llmrca.zoo.corpus import Example, messages
from llmrca.zoo.spec import TrainSchedule, ZooSpec

#: CPU threads used while training and checking, whatever the machine has.
TRAIN_THREADS = 1


@contextmanager
def fixed_threads(n: int = TRAIN_THREADS) -> Iterator[None]:
    """Run the block on ``n`` torch threads, then restore the caller's setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-model warnings and progress bars; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def encode(spec: ZooSpec, tokenizer, examples: Sequence[Example]):
    """Right-padded ``(input_ids, attention_mask, labels)``; only assistant tokens are labelled.

    The labels cover the assistant's answer and the ``<|end|>`` that closes it, so the model learns
    to stop.
    """

    assistant_id = tokenizer.convert_tokens_to_ids(spec.assistant_token)
    rows = []
    for e in examples:
        text = tokenizer.apply_chat_template(messages(spec, e.user, e.assistant, e.system),
                                             tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > spec.model.n_positions:
            from llmrca.errors import ZooBuildError
            raise ZooBuildError(f"training example of {len(ids)} tokens is longer than "
                                f"n_positions={spec.model.n_positions}: {e.user!r}")
        start = len(ids) - ids[::-1].index(assistant_id)   # first token after <|assistant|>
        rows.append((ids, start))
    return pad_labelled(rows, tokenizer.pad_token_id)


def pad_labelled(rows: Sequence[tuple[Sequence[int], int]], pad_id: int):
    """Right-padded ``(input_ids, attention_mask, labels)`` of ``(token ids, start)`` rows: the
    tokens from ``start`` on are labelled, the rest (and the padding) are -100."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, start) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        labels[i, start:len(ids)] = torch.tensor(ids[start:])
    return input_ids, attention, labels


def new_model(spec: ZooSpec, tokenizer, seed: int):
    """A freshly initialised GPT-2 of the spec's shape (no dropout), seeded."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    end_id = tokenizer.convert_tokens_to_ids(spec.end_token)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=spec.model.n_positions, n_embd=spec.model.n_embd,
        n_layer=spec.model.n_layer, n_head=spec.model.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        # torch's own GELU kernel: GPT-2's default tanh formula costs a third of a forward pass
        # at this size.
        activation_function="gelu",
        bos_token_id=end_id, eos_token_id=end_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = end_id
    model.generation_config.bos_token_id = end_id
    return model


def batch_order(n_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Indices of each step's batch: successive shuffled epochs, cut into batches."""
    rng = random.Random(seed)
    flat: list[int] = []
    while len(flat) < steps * batch_size:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        flat += epoch
    return [flat[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def train(model, data, schedule: TrainSchedule, seed: int, *, desc: str = "",
          progress: bool = False) -> list[float]:
    """Train ``model`` in place on ``data`` (from :func:`encode`); returns the loss per step."""
    import torch

    input_ids, attention, labels = data
    if schedule.steps == 0:
        return []
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate,
                                  weight_decay=schedule.weight_decay, betas=(0.9, 0.98))
    warmup, total = max(schedule.warmup_steps, 0), schedule.steps

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    batches = batch_order(len(input_ids), total, schedule.batch_size, seed)
    losses: list[float] = []
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=desc, unit="step", leave=False, mininterval=0.5)
    try:
        for rows in batches:
            index = torch.tensor(rows)
            mask = attention[index]
            width = int(mask.sum(1).max())   # rows are right-padded: trim the common padding
            out = model(input_ids=input_ids[index, :width], attention_mask=mask[:, :width],
                        labels=labels[index, :width])
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            losses.append(float(out.loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return losses
