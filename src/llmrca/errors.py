"""The exceptions llmrca raises.

Every error derives from :class:`LlmrcaError` and from the built-in that fits, so callers can catch
either. Errors carry structured fields (file, line, field; incident id; path and pid) besides the
message, so a notebook or the CLI can show them without parsing prose.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


class LlmrcaError(Exception):
    """Base class of every error llmrca raises on purpose."""


class ValidationError(LlmrcaError, ValueError):
    """A record of an input file is malformed.

    Attributes
    ----------
    file : str
        The file that holds the bad record.
    line : int or None
        1-based line (JSONL, YAML) or row (CSV: the data row's line in the file; Parquet: row number).
    field : str or None
        The field that is wrong, dotted for nested fields (``messages.2.role``).
    expected : str
        What was expected there.
    """

    def __init__(self, file: str, line: int | None, field: str | None, expected: str,
                 got: object = None):
        self.file = str(file)
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        where = self.file + (f", line {line}" if line is not None else "")
        what = f"field '{field}'" if field else "record"
        msg = f"{where}: {what}: expected {expected}"
        if got is not None:
            shown = repr(got)
            msg += f", got {shown[:80] + '...' if len(shown) > 80 else shown}"
        super().__init__(msg)


class StoreError(LlmrcaError, RuntimeError):
    """The store cannot be opened or used as asked."""


class StoreLockedError(StoreError):
    """Another process holds the store file (as a writer, or as a reader while we write).

    Attributes
    ----------
    path : str
        The store file.
    pid : int or None
        The process that holds the lock, when DuckDB names it.
    """

    def __init__(self, path: str | os.PathLike[str], pid: int | None, detail: str = ""):
        self.path = str(path)
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        # DuckDB's message does not say whether the holder reads or writes.
        msg = (f"store {self.path} is locked: it is open in {holder}, as a reader or a writer; "
               f"close that session and try again (DuckDB lets a file have one writer or "
               f"several readers, not both)")
        if detail:
            msg += f" [{detail}]"
        super().__init__(msg)


class StoreInterruptedError(StoreError):
    """A write to the store was interrupted (Ctrl-C); says whether its work was committed.

    Attributes
    ----------
    path : str
        The store file.
    committed : bool
        True when the interrupt came after the commit went through: all of the work is stored.
        False: none of it is (the transaction was rolled back).
    """

    def __init__(self, path: str | os.PathLike, committed: bool):
        self.path = str(path)
        self.committed = committed
        if committed:
            msg = (f"interrupted after the work was committed: all of it is in {self.path}")
        else:
            msg = f"interrupted; nothing of this command was written to {self.path} (rolled back)"
        super().__init__(msg)


class SchemaVersionError(StoreError):
    """The store was written by a newer llmrca than this one."""


class UnknownNameError(LlmrcaError, KeyError):
    """A name was looked up in a registry (formats, judges, versions, ...) that does not hold it."""

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        valid = ", ".join(self.available) if self.available else "(none registered)"
        super().__init__(f"unknown {kind} '{name}'; valid: {valid}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class NotFoundError(LlmrcaError, LookupError):
    """A record (incident, model version, run) is not in the store."""


class ModelLoadError(LlmrcaError, RuntimeError):
    """A model version cannot be loaded safely (missing source, changed files, pickle weights)."""


class FingerprintMismatchError(ModelLoadError):
    """The files of a registered model version no longer hash to the fingerprint recorded."""

    def __init__(self, name: str, source: str, recorded: str, actual: str):
        self.name, self.source, self.recorded, self.actual = name, source, recorded, actual
        super().__init__(
            f"model version '{name}' at {source}: files changed since registration "
            f"(fingerprint {actual[:12]} != recorded {recorded[:12]}); re-register it with "
            f"`llmrca models add {name} --source {source} --force` if the change is intended")


class ZooBuildError(LlmrcaError, RuntimeError):
    """A model organism missed its behaviour targets after training."""


class ModelRegistryError(LlmrcaError, ValueError):
    """A model version cannot be registered as asked (bad dates, a parent cycle, a bad name)."""


class VersionConflictError(ModelRegistryError):
    """A version name is already registered with another source, revision or fingerprint.

    Attributes
    ----------
    name : str
        The version name.
    recorded : dict
        ``source``, ``revision`` and ``fingerprint`` as registered.
    requested : dict
        The same three as asked for now.
    """

    def __init__(self, name: str, recorded: dict, requested: dict):
        self.name, self.recorded, self.requested = name, dict(recorded), dict(requested)
        changed = [key for key in ("source", "revision", "fingerprint")
                   if recorded.get(key) != requested.get(key)]
        shown = "; ".join(f"{key}: {recorded.get(key)!r} -> {requested.get(key)!r}"
                          for key in changed)
        super().__init__(
            f"model version '{name}' is already registered with a different "
            f"{'/'.join(changed)} ({shown}); pass force=True (`--force`) to replace it")


class NotFittedError(LlmrcaError, ValueError, AttributeError):
    """A trainable component (classifier judge, probe) was used before ``fit`` or ``load``."""


class JudgeContextError(LlmrcaError, ValueError):
    """A judge needs a piece of context (the incident output, the prompt) that was not given.

    Attributes
    ----------
    judge : str
        The judge that needs it.
    key : str
        The missing context key.
    """

    def __init__(self, judge: str, key: str, hint: str = ""):
        self.judge, self.key = judge, key
        msg = f"judge '{judge}' needs context '{key}', which was not given"
        super().__init__(msg + (f"; {hint}" if hint else ""))


class JudgeConfigError(LlmrcaError, ValueError):
    """A judge was configured or trained with values it cannot use (threshold, labels, method)."""


class InvalidArgumentError(LlmrcaError, ValueError):
    """An argument has a value the operation cannot use (a decoding parameter, a variant spec).

    The CLI prints it as a one-line error (exit 1) instead of a traceback.
    """


class NotebookExecutionError(LlmrcaError, RuntimeError):
    """A cell of a workbench notebook failed during ``llmrca run``.

    Wraps papermill's ``PapermillExecutionError``; the partial notebook (executed up to the
    failing cell, with its traceback) is kept at ``output_path``.

    Attributes
    ----------
    notebook : str
        The notebook's name in the suite (``triage``).
    cell_index : int
        0-based index of the failing cell in the executed notebook.
    ename, evalue : str
        The exception's type name and message in the kernel.
    output_path : str or None
        The partial executed notebook.
    """

    def __init__(self, notebook: str, cell_index: int, ename: str, evalue: str,
                 output_path: str | None = None):
        self.notebook, self.cell_index = notebook, cell_index
        self.ename, self.evalue, self.output_path = ename, evalue, output_path
        msg = f"notebook '{notebook}' failed at cell {cell_index}: {ename}: {evalue}"
        if output_path:
            msg += f" (partial notebook kept at {output_path})"
        super().__init__(msg)


class ArchitectureError(LlmrcaError, TypeError):
    """llmrca cannot find a model's decoder layers, embeddings or final norm.

    Attributes
    ----------
    model_type : str
        ``config.model_type`` (empty when the model has no config).
    class_name : str
        The model's class.
    reason : str
        What was missing.
    """

    def __init__(self, model: object, reason: str):
        config = getattr(model, "config", None)
        self.model_type = str(getattr(config, "model_type", "") or "")
        self.class_name = type(model).__name__
        self.reason = reason
        super().__init__(
            f"unsupported architecture: model_type={self.model_type!r}, class {self.class_name}: "
            f"{reason}; register an adapter in llmrca.models.architectures.ARCHITECTURES")


class HookError(LlmrcaError, RuntimeError):
    """A model hook cannot be installed as asked, or a hook was left on a model.

    Attributes
    ----------
    modules : list of str
        The module paths concerned.
    """

    def __init__(self, message: str, modules: Iterable[str] = ()):
        self.modules = list(modules)
        super().__init__(message)


class BackendError(LlmrcaError, RuntimeError):
    """A replay backend failed while running (a remote replica, the engine itself).

    Attributes
    ----------
    backend : str
        The backend's registered name (``ray``, ...).
    """

    def __init__(self, backend: str, message: str):
        self.backend = str(backend)
        super().__init__(f"{backend} backend: {message}")


class BackendUnavailableError(BackendError):
    """A replay backend cannot run here: its optional extra is not installed, or the cluster or
    device it needs cannot be reached. The message says what to install or check.

    Raised either with a message (``BackendUnavailableError("ray", "cannot reach ...")``) or
    with what is missing, one phrase each, and how to get it
    (``BackendUnavailableError("vllm", missing=["a CUDA GPU"], install="...")``).

    Attributes
    ----------
    backend : str
        The backend asked for (``vllm``, ``ray``).
    missing : tuple of str
        What is missing ("the Python package vllm", "a CUDA GPU"); empty when given a message.
    install : str
        How to get it; empty when given a message.
    """

    def __init__(self, backend: str, message: str | None = None, *,
                 missing: Iterable[str] = (), install: str = ""):
        self.missing = tuple(missing)
        self.install = install
        if message is None:
            message = (f"replay backend '{backend}' is unavailable on this machine: missing "
                       f"{' and '.join(self.missing)}. {install}")
        super().__init__(backend, message)
