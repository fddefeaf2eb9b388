"""Where a fine-tune wrote: the norm of the weight change per layer and module.

Parameters are grouped by decoder layer (the index after the adapter's layers path, e.g.
``transformer.h.3.attn.c_attn.weight`` -> layer 3, module ``attn``) and, outside the layers, by
their own name (``transformer.wte``, ``transformer.ln_f``; layer -1). Per group: the Frobenius
norm of ``b - a`` over all its parameters, of ``a``, and their ratio (the relative change).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["parameter_group", "weight_diff_models"]


def parameter_group(name: str, layers_path: str) -> tuple[int, str]:
    """``(layer, module)`` of a parameter name (layer -1 outside the decoder layers)."""
    prefix = layers_path + "."
    if name.startswith(prefix):
        rest = name[len(prefix):].split(".")
        if rest[0].isdigit() and len(rest) > 1:
            return int(rest[0]), rest[1] if len(rest) > 2 else "block"
    return -1, name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name


def weight_diff_models(first, second) -> pd.DataFrame:
    """Per (layer, module): ``n_params, diff_norm, base_norm, relative`` of ``second - first``.

    The two models must have the same parameter names and shapes
    (:class:`~llmrca.internals.patching.IncompatibleModelsError` otherwise). Tied parameters
    are counted once (``named_parameters`` deduplicates them).
    """
    import torch

    from llmrca.internals.patching import IncompatibleModelsError, architecture_signature
    from llmrca.models.architectures import model_parts

    sa, sb = architecture_signature(first), architecture_signature(second)
    if sa != sb:
        diff = sorted(set(sa) ^ set(sb)) or [n for n in sa if sa[n] != sb[n]]
        raise IncompatibleModelsError("architecture", f"{diff[0]} {sa.get(diff[0])}",
                                      f"{diff[0]} {sb.get(diff[0])}")
    layers_path = model_parts(first).layers_path
    theirs = dict(second.named_parameters())
    sums: dict[tuple[int, str], list[float]] = {}
    with torch.no_grad():
        for name, p in first.named_parameters():
            a = p.detach().double()
            b = theirs[name].detach().double().to(a.device)
            entry = sums.setdefault(parameter_group(name, layers_path), [0.0, 0.0, 0.0])
            entry[0] += float(((b - a) ** 2).sum())
            entry[1] += float((a ** 2).sum())
            entry[2] += a.numel()
    rows = [{"layer": layer, "module": module, "n_params": int(v[2]),
             "diff_norm": float(np.sqrt(v[0])), "base_norm": float(np.sqrt(v[1])),
             "relative": float(np.sqrt(v[0]) / np.sqrt(v[1])) if v[1] > 0 else np.nan}
            for (layer, module), v in sums.items()]
    return pd.DataFrame(rows).sort_values(["layer", "module"]).reset_index(drop=True)
