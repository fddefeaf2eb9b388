"""Exporters over a finished run folder (the anonymizing pass of ``llmrca run --anonymize``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from llmrca.reports.anonymize import Anonymizer

__all__ = ["anonymize_run"]

#: Output keys that hold binary images (never masked: base64 is not text).
_IMAGE_KEYS = frozenset({"image/png", "image/jpeg", "image/gif", "image/svg+xml"})
_DATA_URI = re.compile(r"(data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+)")


def _mask_text(text: str, anonymizer: Anonymizer) -> str:
    parts = _DATA_URI.split(text)
    return "".join(p if i % 2 else anonymizer.mask(p) for i, p in enumerate(parts))


def anonymize_run(folder: str | Path) -> Anonymizer:
    """Mask personal data in every text file of a run folder, in place.

    Names are learnt from all files first (a name next to an e-mail address in one answer is
    masked in every question too); images inside notebooks and data URIs are left as they are.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.suffix in (".ipynb", ".json", ".md", ".html"))
    texts = {p: p.read_text(encoding="utf-8") for p in files}
    anonymizer = Anonymizer()
    for path, text in texts.items():
        if path.suffix in (".ipynb", ".json"):
            anonymizer.learn(Anonymizer.strings(json.loads(text)))
        else:
            anonymizer.learn(_DATA_URI.sub(" ", text).splitlines())
    for path, text in texts.items():
        if path.suffix in (".ipynb", ".json"):
            value = anonymizer.mask_value(json.loads(text), skip_keys=_IMAGE_KEYS)
            path.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
        else:
            path.write_text(_mask_text(text, anonymizer), encoding="utf-8")
    return anonymizer
