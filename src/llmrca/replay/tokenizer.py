"""A tokenizer without transformers: enough to render and encode prompts for cache lookups.

A warm replay (every sample already in the store) needs each version's rendered prompts to
compute sample keys, and nothing else from the model. ``transformers.AutoTokenizer`` imports
torch (seconds), so for a local model folder with a ``tokenizer.json`` this module reads the
folder itself: ``tokenizers.Tokenizer`` for encoding and decoding, and the chat template
rendered with jinja2 the way transformers renders it (sandboxed environment, ``trim_blocks``,
``lstrip_blocks``, its ``tojson``, ``raise_exception``, the named special tokens as variables).

It is only ever used to *find* cached samples: a key that it renders differently from
transformers is a cache miss, and a miss makes the replay load the real model and tokenizer
and plan again with them. It cannot make a replay use a prompt transformers would not render.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LightTokenizer", "light_tokenizer"]

_NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class LightTokenizer:
    """The parts of a Hugging Face fast tokenizer that rendering and keys use.

    Attributes
    ----------
    chat_template : str or None
        The folder's chat template (``chat_template.jinja`` or ``tokenizer_config.json``).
    eos_token_id : int or None
    """

    def __init__(self, tokenizer: Any, chat_template: str | None, special: dict[str, str]):
        self._tokenizer = tokenizer
        self.chat_template = chat_template
        self._special = special
        eos = special.get("eos_token")
        self.eos_token_id = tokenizer.token_to_id(eos) if eos else None
        self._compiled: dict[str, Any] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": list(encoding.ids)}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def _template(self, source: str):
        if source not in self._compiled:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message):
                raise jinja2.exceptions.TemplateError(message)

            def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
                return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                                  separators=separators, sort_keys=sort_keys)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[jinja2.ext.loopcontrols])
            env.filters["tojson"] = tojson
            env.globals["raise_exception"] = raise_exception
            self._compiled[source] = env.from_string(source)
        return self._compiled[source]

    def apply_chat_template(self, chat: list[dict[str, Any]], chat_template: str | None = None,
                            add_generation_prompt: bool = True, tokenize: bool = False) -> str:
        source = chat_template or self.chat_template
        if not source:
            raise ValueError("no chat template")
        if tokenize:
            raise ValueError("LightTokenizer renders text only (tokenize=False)")
        return str(self._template(source).render(
            messages=chat, tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **self._special))


def light_tokenizer(folder: str | Path) -> LightTokenizer | None:
    """A :class:`LightTokenizer` for a local model folder, or None when it has no
    ``tokenizer.json`` (then the real tokenizer is needed)."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
        template_path = folder / "chat_template.jinja"
        template = (template_path.read_text("utf-8") if template_path.is_file()
                    else config.get("chat_template"))
        if not isinstance(template, (str, type(None))):  # a list of named templates
            return None
        special = {name: text for name in _NAMED_SPECIAL
                   if (text := _token_text(config.get(name))) is not None}
    except Exception:  # noqa: BLE001 - an unreadable folder just means: load the real one
        return None
    return LightTokenizer(tokenizer, template, special)


def light_context_window(folder: str | Path) -> int | None:
    """The model's context window from its ``config.json`` (as
    :func:`llmrca.replay.prompts.context_window` reads it from the loaded config)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = config.get(attr)
        if isinstance(value, int) and value > 0:
            return value
    return None
