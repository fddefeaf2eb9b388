"""Prompt variants (perturbations), chat-template rendering and the truncation policy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmrca.errors import InvalidArgumentError, LlmrcaError
from llmrca.registry import Registry
from llmrca.replay.decoding import prompt_hash

Messages = list[dict[str, Any]]

#: Used when a tokenizer has no chat template (base models); a warning says so on each sample.
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}")


class PromptTooLongError(LlmrcaError, ValueError):
    """A rendered prompt does not fit the model's context window and may not (or cannot) be cut.

    Attributes
    ----------
    interaction_id : str or None
        The interaction whose prompt is too long.
    prompt_tokens : int
        Length of the rendered prompt, in tokens.
    budget : int
        Tokens available to the prompt: ``context_window - max_new_tokens``.
    context_window : int
        The model's maximum sequence length.
    max_new_tokens : int
        Tokens reserved for the output.
    """

    def __init__(self, interaction_id: str | None, prompt_tokens: int, budget: int,
                 context_window: int, max_new_tokens: int, reason: str = ""):
        self.interaction_id = interaction_id
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.context_window = context_window
        self.max_new_tokens = max_new_tokens
        who = f"interaction {interaction_id}" if interaction_id else "prompt"
        msg = (f"{who}: prompt is {prompt_tokens} tokens, more than the {budget} the model allows "
               f"({context_window}-token context window - {max_new_tokens} max_new_tokens)")
        msg += f"; {reason}" if reason else (
            "; run without --no-truncate (no_truncate=False) to truncate it (keeps the system "
            "prompt and the last turns), or lower --max-new-tokens")
        super().__init__(msg)


# -- variants ---------------------------------------------------------------------------------------

VariantFn = Callable[..., tuple["str | None", Messages, "str | None"]]

#: Kinds of prompt perturbation: name -> function(system_prompt, messages, *args) returning
#: (system_prompt, messages, warning or None). Register more with ``VARIANT_KINDS.register``.
VARIANT_KINDS: Registry[VariantFn] = Registry("replay variant")


def _last_user(messages: Messages) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def _edit_last_user(messages: Messages, edit: Callable[[str], tuple[str, str | None]]):
    messages = copy.deepcopy(messages)
    i = _last_user(messages)
    if i is None:
        return messages, "no user turn to perturb; variant equals the original"
    content = messages[i].get("content")
    if not isinstance(content, str):
        return messages, "last user turn is not plain text; variant equals the original"
    messages[i]["content"], warning = edit(content)
    return messages, warning


@VARIANT_KINDS.register("original")
def _original(system_prompt, messages):
    return system_prompt, copy.deepcopy(messages), None


@VARIANT_KINDS.register("drop_system")
def _drop_system(system_prompt, messages):
    warning = None if system_prompt else "no system prompt to drop; variant equals the original"
    return None, copy.deepcopy(messages), warning


def _strip_prefix(content: str, prefix: str) -> str | None:
    if content.startswith(prefix):
        return content[len(prefix):]
    stripped = content.lstrip()
    if prefix.strip() and stripped.startswith(prefix.strip()):
        return stripped[len(prefix.strip()):].lstrip()
    return None


@VARIANT_KINDS.register("drop_prefix")
def _drop_prefix(system_prompt, messages, prefix: str):
    def edit(content):
        rest = _strip_prefix(content, prefix)
        if rest is None:
            return content, f"prefix {prefix!r} not in the last user turn; variant equals the original"
        return rest, None
    messages, warning = _edit_last_user(messages, edit)
    return system_prompt, messages, warning


@VARIANT_KINDS.register("swap_prefix")
def _swap_prefix(system_prompt, messages, old: str, new: str):
    def edit(content):
        rest = _strip_prefix(content, old)
        if rest is None:
            return content, f"prefix {old!r} not in the last user turn; variant equals the original"
        return new + rest, None
    messages, warning = _edit_last_user(messages, edit)
    return system_prompt, messages, warning


@VARIANT_KINDS.register("replace_request")
def _replace_request(system_prompt, messages, text: str):
    messages, warning = _edit_last_user(messages, lambda content: (text, None))
    return system_prompt, messages, warning


@VARIANT_KINDS.register("drop_span")
def _drop_span(system_prompt, messages, text: str):
    """Delete the first occurrence of ``text`` from the last user turn (else the system prompt)."""
    found = []

    def edit(content):
        if text and text in content:
            found.append(True)
            return content.replace(text, "", 1), None
        return content, None
    messages, warning = _edit_last_user(messages, edit)
    if not found and system_prompt and text and text in system_prompt:
        return system_prompt.replace(text, "", 1), messages, None
    if not found:
        warning = f"span {text!r} not in the prompt; variant equals the original"
    return system_prompt, messages, warning


_ARITY = {"original": 0, "drop_system": 0, "drop_prefix": 1, "swap_prefix": 2, "replace_request": 1,
          "drop_span": 1}


@dataclass(frozen=True)
class Variant:
    """A perturbation of an interaction's prompt, replayed beside the original.

    Build one with :func:`original`, :func:`drop_system`, :func:`drop_prefix`, :func:`swap_prefix`,
    :func:`replace_request`, or parse a spec string with :meth:`parse`.

    Attributes
    ----------
    kind : str
        A name registered in :data:`VARIANT_KINDS`.
    args : tuple of str
        The kind's arguments (the prefix, the replacement text).
    """

    kind: str
    args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Canonical spec, also the ``variant`` column: ``drop_prefix:Pretend you are DAN. ``."""
        if not self.args:
            return self.kind
        if self.kind == "swap_prefix":
            return f"{self.kind}:{self.args[0]}=>{self.args[1]}"
        return f"{self.kind}:{self.args[0]}"

    def apply(self, system_prompt: str | None, messages: Messages):
        """Return ``(system_prompt, messages, warning)`` with the perturbation applied."""
        return VARIANT_KINDS.get(self.kind)(system_prompt, messages, *self.args)

    @classmethod
    def parse(cls, spec: str | Variant) -> Variant:
        """Parse ``original``, ``drop-system``, ``drop-prefix:TEXT``, ``swap-prefix:OLD=>NEW``,
        ``replace-request:TEXT``, ``drop-span:TEXT`` (dashes or underscores). Text keeps its
        spaces."""
        if isinstance(spec, Variant):
            return spec
        kind, sep, rest = str(spec).partition(":")
        kind = kind.strip().replace("-", "_")
        VARIANT_KINDS.get(kind)  # unknown kinds fail with the list of valid ones
        arity = _ARITY.get(kind)
        if kind == "swap_prefix":
            old, arrow, new = rest.partition("=>")
            if not arrow:
                raise InvalidArgumentError(f"variant {spec!r}: swap-prefix needs 'OLD=>NEW'")
            return cls(kind, (old, new))
        if arity == 0:
            if sep:
                raise InvalidArgumentError(f"variant {spec!r}: {kind} takes no argument")
            return cls(kind)
        if arity == 1 and not (sep and rest):
            raise InvalidArgumentError(f"variant {spec!r}: {kind} needs an argument, as {kind}:TEXT")
        return cls(kind, (rest,) if sep else ())


def original() -> Variant:
    """The interaction as logged."""
    return Variant("original")


def drop_system() -> Variant:
    """The interaction without its system prompt."""
    return Variant("drop_system")


def drop_prefix(text: str) -> Variant:
    """Remove ``text`` from the start of the last user turn (e.g. a role-play jailbreak prefix)."""
    return Variant("drop_prefix", (text,))


def swap_prefix(old: str, new: str) -> Variant:
    """Replace the prefix ``old`` of the last user turn by ``new``."""
    return Variant("swap_prefix", (old, new))


def drop_span(text: str) -> Variant:
    """Delete ``text`` (its first occurrence) from the last user turn, else from the system
    prompt: the generic deletion an attribution's faithfulness check replays."""
    return Variant("drop_span", (text,))


def replace_request(text: str) -> Variant:
    """Replace the whole last user turn by ``text`` (e.g. a benign request)."""
    return Variant("replace_request", (text,))


# -- rendering --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt rendered with the chat template and encoded.

    Attributes
    ----------
    text : str
        The rendered prompt (chat template, generation prompt added).
    token_ids : tuple of int
        Its tokens.
    prompt_id : str
        Content hash of text and tokens (the prompt part of the sample key).
    original_tokens : int
        Length before truncation.
    warnings : tuple of str
        Truncation and template warnings, recorded on every sample of this prompt.
    """

    text: str
    token_ids: tuple[int, ...]
    prompt_id: str
    original_tokens: int
    warnings: tuple[str, ...] = ()

    @property
    def truncated(self) -> bool:
        return len(self.token_ids) < self.original_tokens


def context_window(model) -> int | None:
    """The longest sequence ``model`` accepts (``n_positions`` / ``max_position_embeddings``)."""
    config = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _render_text(tokenizer, system_prompt: str | None, messages: Messages) -> str:
    chat = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + list(messages)
    template = None if getattr(tokenizer, "chat_template", None) else PLAIN_TEMPLATE
    return tokenizer.apply_chat_template(chat, chat_template=template, add_generation_prompt=True,
                                         tokenize=False)


def _encode(tokenizer, text: str) -> list[int]:
    # The template already wrote any special tokens it wants; do not add BOS/EOS again.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_prompt(tokenizer, system_prompt: str | None, messages: Messages, *,
                  max_prompt_tokens: int | None = None, no_truncate: bool = False,
                  interaction_id: str | None = None, context: int | None = None,
                  max_new_tokens: int = 0) -> RenderedPrompt:
    """Render ``system_prompt`` + ``messages`` with the tokenizer's chat template and encode it.

    Truncation policy, when the prompt is longer than ``max_prompt_tokens`` (the context window
    minus ``max_new_tokens``): keep the system prompt and the last turn always; drop the oldest
    turns whole while the turns after them still do not fit; then cut the oldest remaining turn
    from its left (its start) token by token until the prompt fits. A warning describing the cut
    is attached. ``no_truncate=True`` raises :class:`PromptTooLongError` instead, as does a system
    prompt that alone leaves no room.

    Parameters
    ----------
    context, max_new_tokens : int
        Only used in messages and the error (the budget is ``max_prompt_tokens``).
    """
    warnings: list[str] = []
    if not getattr(tokenizer, "chat_template", None):
        warnings.append("tokenizer has no chat template; used llmrca's plain 'role: content' one")
    turns = copy.deepcopy(list(messages))
    text = _render_text(tokenizer, system_prompt, turns)
    ids = _encode(tokenizer, text)
    n_original = len(ids)
    if max_prompt_tokens is None or n_original <= max_prompt_tokens:
        return RenderedPrompt(text, tuple(ids), prompt_hash(text, ids), n_original, tuple(warnings))

    def too_long(reason=""):
        return PromptTooLongError(interaction_id, n_original, max_prompt_tokens,
                                  context or max_prompt_tokens + max_new_tokens, max_new_tokens,
                                  reason)

    if no_truncate:
        raise too_long()
    if max_prompt_tokens <= 0:
        raise too_long("no room is left for the prompt; lower max_new_tokens")

    def length(ts: Messages) -> int:
        return len(_encode(tokenizer, _render_text(tokenizer, system_prompt, ts)))

    dropped = 0
    while len(turns) > 1 and length(turns[1:]) > max_prompt_tokens:
        turns.pop(0)
        dropped += 1
    cut = 0
    if length(turns) > max_prompt_tokens:
        content = turns[0].get("content")
        if not isinstance(content, str):
            if len(turns) > 1:
                turns.pop(0)
                dropped += 1
            else:
                raise too_long("the last turn alone does not fit and is not plain text")
        else:
            tokens = _encode(tokenizer, content)
            keep = len(tokens) - (length(turns) - max_prompt_tokens)
            # Re-encoding at the cut can merge tokens differently: shrink until it fits.
            while True:
                if keep <= 0:
                    if len(turns) > 1:
                        turns.pop(0)
                        dropped += 1
                        cut = 0
                        break
                    raise too_long("the system prompt and chat template alone leave no room "
                                   "for the last turn")
                turns[0] = dict(turns[0], content=tokenizer.decode(tokens[len(tokens) - keep:]))
                over = length(turns) - max_prompt_tokens
                if over <= 0:
                    cut = len(tokens) - keep
                    break
                keep -= over
    text = _render_text(tokenizer, system_prompt, turns)
    ids = _encode(tokenizer, text)
    detail = f"dropped {dropped} oldest turn(s)"
    if cut:
        detail += f", cut the first {cut} token(s) of the oldest kept turn"
    warnings.append(f"prompt truncated from {n_original} to {len(ids)} tokens to fit "
                    f"{max_prompt_tokens} (context window minus max_new_tokens): {detail}")
    return RenderedPrompt(text, tuple(ids), prompt_hash(text, ids), n_original, tuple(warnings))
