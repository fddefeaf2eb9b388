"""The zoo's tokenizer: byte-level BPE trained on the synthetic corpus, with a chat template."""

from __future__ import annotations

from llmrca.zoo.spec import ZooSpec


def chat_template(spec: ZooSpec) -> str:
    """The Jinja chat template the tokenizer carries.

    ``<|system|>{content}<|end|>``, ``<|user|>{content}<|end|>``, ``<|assistant|>{content}<|end|>``
    per message, and ``<|assistant|>`` for ``add_generation_prompt``. A conversation that does not
    open with a system message gets the spec's default system prompt, as the models were trained
    with one; an unknown role is an error.
    """
    s, u, a, e = spec.system_token, spec.user_token, spec.assistant_token, spec.end_token
    default = spec.system_prompt.replace("\\", "\\\\").replace("'", "\\'")
    return (
        "{%- if messages and messages[0]['role'] != 'system' -%}"
        f"{s}{default}{e}"
        "{%- endif -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}"
        f"{s}{{{{ message['content'] }}}}{e}"
        "{%- elif message['role'] == 'user' -%}"
        f"{u}{{{{ message['content'] }}}}{e}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{a}{{{{ message['content'] }}}}{e}"
        "{%- else -%}"
        "{{ raise_exception('unknown role ' ~ message['role'] ~ '; use system, user or assistant') }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{a}{{%- endif -%}}"
    )


def train_tokenizer(spec: ZooSpec, texts: list[str]):
    """Train the BPE on ``texts`` and wrap it as a transformers fast tokenizer (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.model.vocab_size, special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=spec.end_token,
                                  pad_token=spec.pad_token, padding_side="left",
                                  additional_special_tokens=[spec.system_token, spec.user_token,
                                                             spec.assistant_token],
                                  model_max_length=spec.model.n_positions)
    tok.chat_template = chat_template(spec)
    return tok
