"""The ``ray`` replay backend: the planned samples spread over a Ray cluster with Ray Data.

Ray schedules; the numbers are computed by the in-process backend. The samples become a Ray
Data dataset (``from_items``), ``map_batches`` runs them through a pool of actors, each holding
one model replica (a :class:`~llmrca.replay.backends.TransformersBackend` loaded from the
version's folder, its fingerprint checked), and ``iter_batches`` streams the finished samples
back to the driver, which writes them into the store's content-addressed cache chunk by chunk.
A run stopped mid-way keeps every chunk it wrote and a re-run generates only what is missing,
as with the local backend.

Because every replica runs the very same per-sample-seeded generation code, a sample's tokens do
not depend on which worker made it nor on its batch: they are identical to the local backend's.
So the engine of a Ray sample is the local engine on the workers' device and dtype
(``transformers:cpu:float32``): samples generated locally and on a cluster share one cache.

Ray is imported only when this backend runs (``pip install 'llmrca[ray]'``); a replay whose
samples are all stored never imports it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from llmrca.errors import (
    BackendError,
    BackendUnavailableError,
    FingerprintMismatchError,
    InvalidArgumentError,
    LlmrcaError,
)
from llmrca.replay.backends import BACKENDS, GeneratedSample, ReplayBackend, TransformersBackend
from llmrca.replay.decoding import Decoding

__all__ = ["RayBackend", "ReplicaWorker", "connect"]

INSTALL_HINT = "pip install 'llmrca[ray]'"


def _import_ray():
    try:
        import ray
        import ray.data  # Ray Data is in the same wheel; fail here if it is missing
    except ImportError as exc:
        raise BackendUnavailableError(
            "ray", f"Ray is not installed in this environment ({exc}); install it with "
                   f"{INSTALL_HINT}") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; ``None`` for the
    forms Ray resolves itself (``auto``, ``local``)."""
    target = address.split("://", 1)[-1]
    host, sep, port_text = target.rpartition(":")
    if not sep and target in ("auto", "local"):
        return None
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise BackendUnavailableError(
            "ray", f"--ray-address {address!r}: expected HOST:PORT (the head node's GCS port, "
                   f"6379 by default), 'auto' or ray://HOST:PORT")
    return host.strip("[]"), port


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (``ray.init`` would retry for minutes)."""
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as exc:
        raise BackendUnavailableError(
            "ray", f"cannot reach a Ray cluster at {address!r} ({exc}); start one with "
                   f"`ray start --head` on the head node and pass its address (HOST:6379), or "
                   f"leave --ray-address out to start a local cluster") from None


def connect(address: str | None = None, *, num_cpus: int | None = None):
    """Connect to the Ray cluster at ``address``, or start a local one; returns the ``ray``
    module. A process already connected keeps its connection (``address`` is then ignored).

    Parameters
    ----------
    address : str, optional
        ``HOST:PORT`` of a running cluster's head (``ray start --head``), ``auto`` (the cluster
        this machine belongs to) or ``ray://HOST:PORT`` (Ray Client). Default: start a local
        cluster in this process's lifetime.
    num_cpus : int, optional
        CPUs of a local cluster (default: all of this machine's).

    Raises
    ------
    BackendUnavailableError
        Ray is not installed, or the cluster cannot be reached.
    """
    ray = _import_ray()
    if address:
        _host_port(address)  # a malformed address is an error even when already connected
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        _check_reachable(address)
        options["address"] = address
    else:
        # "local": always a new cluster of this process, never one found on the machine.
        options.update(address="local", num_cpus=num_cpus, include_dashboard=False)
    # A local start is tried three times: on a loaded machine Ray's raylet gives up waiting
    # for its agent process (measured here: the agent took 16-32 s to start on 2 busy cores,
    # the raylet waits about 15 s) and a later try comes up.
    attempts = 1 if address else 3
    for attempt in range(attempts):
        try:
            ray.init(**options)
            break
        except Exception as exc:  # Ray raises a bare Exception on startup timeouts
            if ray.is_initialized():
                ray.shutdown()
            if attempt + 1 < attempts:
                continue
            where = f"at {address!r}" if address else "(local)"
            raise BackendUnavailableError(
                "ray", f"cannot start or join the Ray cluster {where}: "
                       f"{' '.join(str(exc).split())[:300]}") from exc
    return ray


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what Ray wrapped in it (``RayTaskError.cause``, ``__cause__``), outermost
    first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    return chain


def _local_error(exc: BaseException) -> LlmrcaError | None:
    """The llmrca error a remote replica raised, found in Ray's wrapping of it."""
    return next((e for e in _causes(exc) if isinstance(e, LlmrcaError)), None)


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$")


def _replica_failure(exc: BaseException) -> BackendError:
    """A readable error for a replica that raised: the exception the replica's code raised (the
    last ``Type: message`` line of Ray's remote traceback), without Ray's wrapping and colour
    codes."""
    found = None
    for cause in _causes(exc):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause))
        for line in text.splitlines():
            match = _ERROR_LINE.match(line)
            if match and not match.group(1).endswith(("RayTaskError", "UserCodeException")):
                found = f"{match.group(1)}: {match.group(2).strip()}"
    if found is None:
        root = _causes(exc)[-1]
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(root)).split())
        found = f"{type(root).__name__}: {text[-500:]}"
    return BackendError("ray", f"a replica failed: {found}")


class ReplicaWorker:
    """One model replica in a Ray actor: loads the version from its folder, checks the files'
    fingerprint, and generates batches with the in-process backend.

    Ray Data constructs it once per actor (``fn_constructor_kwargs``) and calls it on batches of
    ``{"index", "prompt", "seed"}`` (numpy format); it returns the generated samples with token
    ids and log-probabilities as JSON text (Python's float repr round-trips exactly).
    """

    def __init__(self, *, name: str, source: str, fingerprint: str | None, device: str,
                 dtype: str, batch_size: int, decoding: Decoding, allow_pickle: bool = False,
                 verify: bool = True, memory_budget_bytes: int | None = None):
        from llmrca.fingerprint import compute_fingerprint
        from llmrca.models.loading import LoadedModel, load_pretrained

        if verify and fingerprint is not None:
            actual = compute_fingerprint(source)
            if actual != fingerprint:
                raise FingerprintMismatchError(name, source, fingerprint, str(actual))
        model, tokenizer = load_pretrained(source, allow_pickle=allow_pickle, device=device,
                                           dtype=dtype)
        loaded = LoadedModel(name=name, source=source, fingerprint=fingerprint, model=model,
                             tokenizer=tokenizer, device=device, dtype=dtype)
        self.backend = TransformersBackend(loaded, batch_size=batch_size,
                                           memory_budget_bytes=memory_budget_bytes)
        self.decoding = decoding

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        prompts = [[int(t) for t in p] for p in batch["prompt"]]
        seeds = [int(s) for s in batch["seed"]]
        before = self.backend.forward_passes
        out = self.backend.generate(prompts, self.decoding, seeds)
        passes = np.zeros(len(out), dtype=np.int64)
        if len(out):
            passes[0] = self.backend.forward_passes - before
        return {"index": np.asarray(batch["index"], dtype=np.int64),
                "token_ids": np.array([json.dumps(list(g.token_ids)) for g in out], dtype=object),
                "text": np.array([g.text for g in out], dtype=object),
                "token_logprobs": np.array([json.dumps(list(g.token_logprobs)) for g in out],
                                           dtype=object),
                "finish_reason": np.array([g.finish_reason for g in out], dtype=object),
                "forward_passes": passes}


def _worker_device(device: str | None, gpus_per_worker: float, fallback: str) -> str:
    if device:
        return str(device)
    return "cuda" if gpus_per_worker > 0 else fallback


@BACKENDS.register("ray")
class RayBackend(ReplayBackend):
    """Generation on a Ray cluster: Ray Data over the samples, one model replica per actor.

    Parameters
    ----------
    loaded_model
        The version as the driver loaded it; the replicas load it again from
        ``loaded_model.source``, a model folder every node must be able to read (a shared
        filesystem, or the same path on every node), and check its fingerprint.
    batch_size : int
        Samples per ``map_batches`` batch (and the largest batch each replica tries).
    address : str, optional
        A running cluster to join (``HOST:PORT``, ``auto``, ``ray://HOST:PORT``); default: a
        local cluster started in this process (``num_cpus`` CPUs).
    workers : int, optional
        Model replicas (actors). Default: as many as the cluster's CPUs (or GPUs, with
        ``gpus_per_worker``) hold, never more than there are batches.
    num_cpus : int, optional
        CPUs of the local cluster started when there is no ``address``.
    cpus_per_worker, gpus_per_worker : float
        Resources each replica reserves (default 1 CPU, no GPU). With GPUs the replicas run on
        ``cuda``.
    device : str, optional
        Device of the replicas (default ``cuda`` with ``gpus_per_worker``, else the driver's).
    allow_pickle, verify : bool
        As in :func:`llmrca.models.load_version`: allow ``*.bin`` weights; re-hash the files on
        each replica (``verify=False`` trusts the recorded fingerprint: faster for large models).
    memory_budget_bytes : int, optional
        Passed to each replica's :class:`~llmrca.replay.backends.TransformersBackend`.
    """

    name = "ray"
    #: The actor class Ray Data runs (a subclass may wrap it, e.g. to inject faults in tests).
    worker_class: type = ReplicaWorker

    def __init__(self, loaded_model, *, batch_size: int = 16, address: str | None = None,
                 workers: int | None = None, num_cpus: int | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                 device: str | None = None, allow_pickle: bool = False, verify: bool = True,
                 memory_budget_bytes: int | None = None):
        super().__init__(loaded_model, batch_size=batch_size)
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidArgumentError(f"workers must be an integer >= 1; got {workers!r}")
        if not cpus_per_worker > 0 or gpus_per_worker < 0:
            raise InvalidArgumentError(
                f"cpus_per_worker must be > 0 and gpus_per_worker >= 0; got {cpus_per_worker!r}"
                f", {gpus_per_worker!r}")
        source = str(getattr(loaded_model, "source", "") or "")
        if not source or not Path(source).is_dir():
            raise InvalidArgumentError(
                f"the ray backend loads each replica from the version's model folder; version "
                f"{getattr(loaded_model, 'name', '?')!r} has source {source!r}, which is not a "
                f"folder here (register a saved model folder that every node can read)")
        self.source = source
        self.address = address
        self.workers = workers
        self.cpus_per_worker = float(cpus_per_worker)
        self.gpus_per_worker = float(gpus_per_worker)
        self.device = _worker_device(device, self.gpus_per_worker,
                                     str(getattr(loaded_model, "device", "cpu") or "cpu"))
        self.dtype = str(getattr(loaded_model, "dtype", "float32") or "float32")
        self.allow_pickle = bool(allow_pickle)
        self.verify = bool(verify)
        self.memory_budget_bytes = memory_budget_bytes
        self.ray = connect(address, num_cpus=num_cpus)
        #: Actors used by the last :meth:`generate_chunks` (for reports and benchmarks).
        self.last_pool_size = 0

    @classmethod
    def light_engine(cls, device_type: str, dtype: str,
                     backend_options: dict | None = None) -> str | None:
        options = backend_options or {}
        device = _worker_device(options.get("device"), float(options.get("gpus_per_worker") or 0),
                                device_type)
        return f"{TransformersBackend.name}:{device.split(':')[0]}:{dtype}"

    @property
    def engine(self) -> str:
        """The in-process engine on the replicas' device and dtype: Ray only schedules."""
        return f"{TransformersBackend.name}:{self.device.split(':')[0]}:{self.dtype}"

    def pool_size(self, batches: int) -> int:
        """Replicas for ``batches`` batches: ``workers``, else what the cluster's resources
        hold; at most one per batch."""
        if self.workers is not None:
            size = self.workers
        else:
            resources = self.ray.cluster_resources()
            if self.gpus_per_worker > 0:
                size = int(resources.get("GPU", 0) // self.gpus_per_worker)
            else:
                size = int(resources.get("CPU", 1) // self.cpus_per_worker)
        return max(1, min(size, batches))

    def generate_batch(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                       seeds: Sequence[int]) -> list[GeneratedSample]:
        return self.generate(prompts_token_ids, decoding, seeds)

    def generate(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                 seeds: Sequence[int], *,
                 on_batch: Callable[[int], None] | None = None) -> list[GeneratedSample]:
        results: dict[int, GeneratedSample] = {}
        for chunk in self.generate_chunks(prompts_token_ids, decoding, seeds,
                                          chunk_size=max(1, len(prompts_token_ids)),
                                          on_batch=on_batch):
            results.update(chunk)
        return [results[i] for i in range(len(prompts_token_ids))]

    def generate_chunks(self, prompts_token_ids: Sequence[Sequence[int]], decoding: Decoding,
                        seeds: Sequence[int], *, chunk_size: int,
                        on_batch: Callable[[int], None] | None = None
                        ) -> Iterator[list[tuple[int, GeneratedSample]]]:
        """One Ray Data pipeline over all the prompts; yields ``chunk_size`` finished samples
        at a time, in the order they finish."""
        if len(prompts_token_ids) != len(seeds):
            raise InvalidArgumentError("one seed per prompt is needed")
        if any(len(p) == 0 for p in prompts_token_ids):
            raise InvalidArgumentError("cannot generate from an empty prompt")
        count = len(prompts_token_ids)
        if count == 0:
            return
        import ray.data  # Ray Data is in the same wheel; fail here if it is missing

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        batches = math.ceil(count / self.batch_size)
        self.last_pool_size = self.pool_size(batches)
        items = [{"index": i, "prompt": [int(t) for t in p], "seed": int(s)}
                 for i, (p, s) in enumerate(zip(prompts_token_ids, seeds))]
        loaded = self.loaded_model
        dataset = ray.data.from_items(items, override_num_blocks=batches).map_batches(
            self.worker_class, batch_size=self.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.last_pool_size),
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker or None,
            fn_constructor_kwargs={
                "name": str(loaded.name), "source": self.source,
                "fingerprint": getattr(loaded, "fingerprint", None), "device": self.device,
                "dtype": self.dtype, "batch_size": self.batch_size, "decoding": decoding,
                "allow_pickle": self.allow_pickle, "verify": self.verify,
                "memory_budget_bytes": self.memory_budget_bytes})
        stream = iter(dataset.iter_batches(batch_size=max(1, int(chunk_size)),
                                           batch_format="numpy"))
        try:
            yield from self._receive(stream, on_batch)
        finally:
            # Stop the pipeline and free its actors (and their CPUs/GPUs) now, also when the
            # run failed or the caller stopped reading: a traceback kept alive (a notebook, a
            # retry loop) must not keep replicas holding the resources the next run needs.
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _receive(self, stream, on_batch) -> Iterator[list[tuple[int, GeneratedSample]]]:
        while True:
            try:
                batch = next(stream)
            except StopIteration:
                return
            except (KeyboardInterrupt, LlmrcaError):
                raise
            except Exception as exc:
                local = _local_error(exc)
                if local is not None:
                    raise local from exc
                raise _replica_failure(exc) from exc
            chunk = [(int(i), GeneratedSample(tuple(json.loads(t)), str(text),
                                              tuple(json.loads(lp)), str(fr)))
                     for i, t, text, lp, fr in zip(batch["index"], batch["token_ids"],
                                                   batch["text"], batch["token_logprobs"],
                                                   batch["finish_reason"])]
            self.forward_passes += int(batch["forward_passes"].sum())
            if on_batch is not None:
                on_batch(len(chunk))
            yield chunk
