"""Fingerprints of model folders: which files identify a model version, and their hash.

A fingerprint is the SHA-256 over the files that decide what a model computes (config, weights,
tokenizer), taken in sorted order with their names, so renaming or changing any of them changes it.
A hub id has no fingerprint until its files are on this machine (see
:func:`llmrca.models.loading.load_version`).
"""

from __future__ import annotations

import hashlib
import os
import re
from fnmatch import fnmatch
from pathlib import Path

from llmrca.errors import ModelLoadError

#: File name patterns (top level of the model folder) that take part in the fingerprint.
FINGERPRINT_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.bin.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)

#: What a Hugging Face hub id looks like: ``name`` or ``owner/name``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_CHUNK = 1 << 20


def is_local_source(source: str | os.PathLike) -> bool:
    """True when ``source`` names a folder on this machine rather than a hub id.

    A source is local when it exists, or when it is spelled as a path (absolute, ``./``, ``../``,
    ``~``) or does not look like a hub id at all. ``owner/name`` that does not exist locally is a
    hub id, as in transformers.
    """
    text = os.fspath(source)
    if Path(text).expanduser().exists():
        return True
    if text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(text):
        return True
    return not _HUB_ID.match(text)


def fingerprint_files(path: str | os.PathLike) -> list[Path]:
    """The files of a model folder that the fingerprint covers, sorted by name."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model source {folder} does not exist or is not a folder")
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and any(fnmatch(p.name, pat) for pat in FINGERPRINT_PATTERNS)),
                  key=lambda p: p.name)


def compute_fingerprint(path: str | os.PathLike) -> str | None:
    """SHA-256 (hex) over a model folder's config, weights and tokenizer files.

    Parameters
    ----------
    path : path-like
        A local model folder, or a hub id (which gets ``None``: its files are not here yet).

    Returns
    -------
    str or None
        The hex digest; each file contributes its name, its size and its own SHA-256, in name order.

    Raises
    ------
    ModelLoadError
        The folder is missing, or holds no config or weights file.
    """
    if not is_local_source(path):
        return None
    files = fingerprint_files(path)
    names = {p.name for p in files}
    has_weights = any(fnmatch(n, "*.safetensors") or fnmatch(n, "*.bin") for n in names)
    if "config.json" not in names or not has_weights:
        raise ModelLoadError(
            f"model source {Path(path).expanduser()} holds no model: expected config.json and "
            f"*.safetensors or *.bin weights, found {sorted(names) or 'none of them'}")
    total = hashlib.sha256()
    for file in files:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        total.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        total.update(digest.digest())
    return total.hexdigest()
