"""Checkpoints: everything a resumed run needs to continue exactly as an uninterrupted one.

A checkpoint is an ``.npz`` file (a zip of ``.npy`` arrays, no pickles) holding
  * ``model/<name>``: the model's ``state_dict`` under PyTorch's names,
  * ``optim/<index>/momentum_buffer``: the optimiser's momentum buffers,
  * ``__meta__``: one JSON string with the format version, the epoch, the optimiser's
    hyper-parameters, the scheduler state, the random generator states (the caller's, and every
    module that has ``rng_state``, e.g. ``Dropout``) and free-form ``extra`` data.

Writing is atomic: the file is written under a temporary name in the same directory, flushed to
disk, then renamed over the target with ``os.replace``, so a crash never leaves a half-written
checkpoint under the real name; the temporary files that killed saves leave behind are removed by
the next successful save of the same path.  Reading uses ``np.load(allow_pickle=False)`` (never
unpickles) and checks everything (format, names, shapes, finiteness, optimiser and generator
states) before assigning anything: a corrupt or mismatched file raises ``CheckpointError``
(whatever zipfile or NumPy raised is its ``__cause__``) and leaves the model, optimiser and
scheduler untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from cnncore.nn.module import Module
from cnncore.optim import SGD, StepLR

FORMAT = "cnncore-checkpoint"
VERSION = 1
_META = "__meta__"

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint", "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file that is corrupt, not a cnncore checkpoint, or does not match the model."""


def _rng_modules(model: Module) -> dict[str, Any]:
    return {
        name: m
        for name, m in model.named_modules()
        if callable(getattr(m, "rng_state", None)) and callable(getattr(m, "set_rng_state", None))
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: SGD | None = None,
    scheduler: StepLR | None = None,
    epoch: int = 0,
    rng: np.random.Generator | None = None,
    extra=None,
) -> None:
    """Write a checkpoint atomically (temporary file + ``os.replace``).

    ``rng``: a generator whose state should be restored on resume (the training loop's shuffling
    and augmentation); ``extra``: JSON-serialisable data (e.g. the history of per-epoch metrics).
    """
    arrays: dict[str, np.ndarray] = {}
    for name, a in model.state_dict().items():
        arrays[f"model/{name}"] = a
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": list(model.state_dict().keys()),
        "optimizer": None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng.bit_generator.state if rng is not None else None,
        "module_rng": {name: m.rng_state() for name, m in _rng_modules(model).items()},
        "extra": extra,
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        meta["optimizer"] = {"param_groups": sd["param_groups"], "state": sorted(sd["state"])}
        for j, entry in sd["state"].items():
            arrays[f"optim/{j}/momentum_buffer"] = np.asarray(entry["momentum_buffer"])
    try:
        meta_json = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"checkpoint metadata (extra, states) must be JSON-serialisable: {e}"
        ) from e
    arrays[_META] = np.array(meta_json)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: str) -> None:
    """Remove the temporary files that earlier saves of ``path`` left behind when their process
    was killed between creating and renaming them (``.<name>.XXXX.tmp`` beside ``path``).

    Called after a successful save, so the newest checkpoint is already in place; concurrent
    saves to one path are not supported (one would remove the other's temporary file, and only
    the last rename would survive anyway).
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:  # already gone, or not ours to remove: leave it
                pass


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint file, fully read and CRC-checked; no model needed.

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError`` for anything that is
    not an intact cnncore checkpoint.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise CheckpointError(f"{path!r} is a single .npy array, not a checkpoint")
            arrays = {k: z[k] for k in z.files}  # reads every member: CRC errors surface here
    except CheckpointError:
        raise
    except Exception as e:
        # zipfile and numpy raise many kinds for damaged files (BadZipFile, zlib.error, EOFError,
        # NotImplementedError for a damaged compression method, RuntimeError for a damaged flag,
        # MemoryError for a damaged array header ...): all of them mean "corrupt"
        raise CheckpointError(
            f"{path!r} is corrupt or not a checkpoint: {type(e).__name__}: {e}"
        ) from e
    if _META not in arrays:
        raise CheckpointError(f"{path!r} has no {_META} entry: not a cnncore checkpoint")
    raw = arrays.pop(_META)
    try:
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise ValueError("metadata is not a string")
        meta = json.loads(str(raw))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path!r} has unreadable metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a {FORMAT} file")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path!r} has checkpoint version {meta.get('version')!r}; this cnncore reads {VERSION}"
        )
    return meta, arrays


def _check_model(path: str, model: Module, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    state = {k[len("model/") :]: a for k, a in arrays.items() if k.startswith("model/")}
    params = dict(model.named_parameters())
    unexpected = sorted(set(state) - set(params))
    missing = [n for n in params if n not in state]
    if unexpected or missing:
        raise CheckpointError(
            f"{path!r} does not match the model: missing {missing}, unexpected {unexpected}"
        )
    for name, a in state.items():
        if tuple(a.shape) != params[name].shape:
            raise CheckpointError(
                f"{path!r}: shape mismatch for {name!r}: checkpoint has {tuple(a.shape)}, "
                f"model has {params[name].shape}"
            )
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path!r}: entry {name!r} is not a finite float array")
    return state


def _check_rng_state(state, kind: str, what: str, path: str) -> dict:
    """``state`` must load into a fresh generator of bit-generator ``kind`` (e.g. "PCG64")."""
    try:
        fresh = np.random.Generator(getattr(np.random, kind)())
        fresh.bit_generator.state = state
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise CheckpointError(f"{path!r}: bad random generator state for {what}: {e}") from e
    return state


def load_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: SGD | None = None,
    scheduler: StepLR | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer``, ``scheduler``, ``rng``, the modules' generators) from
    a checkpoint; returns ``{"epoch": ..., "extra": ...}``.

    All-or-nothing: every part is validated before anything is assigned.  A file written without
    an optimiser (scheduler, rng) cannot restore one: asking for it raises ``CheckpointError``.
    """
    path = os.fspath(path)
    meta, arrays = read_checkpoint(path)
    try:
        checked = _check_all(path, meta, arrays, model, optimizer, scheduler, rng)
    except CheckpointError:
        raise
    except Exception as e:  # a damaged field of an intact file: still "corrupt", typed as such
        raise CheckpointError(f"{path!r}: unreadable checkpoint contents: {e!r}") from e
    state, opt_checked, sched_checked, rng_state, mods, saved, epoch = checked

    # everything checked: assign
    model.load_state_dict(state)
    if optimizer is not None:
        optimizer._apply_state(opt_checked)
    if scheduler is not None:
        scheduler._apply_state(sched_checked)
    if rng is not None:
        rng.bit_generator.state = rng_state
    for name, st in saved.items():
        mods[name].set_rng_state(st)
    return {"epoch": epoch, "extra": meta.get("extra")}


def _check_all(path, meta, arrays, model, optimizer, scheduler, rng) -> tuple:
    """Every part of a checkpoint validated against the objects to restore; assigns nothing."""
    state = _check_model(path, model, arrays)

    opt_checked = sched_checked = rng_state = None
    if optimizer is not None:
        om = meta.get("optimizer")
        if not isinstance(om, dict):
            raise CheckpointError(f"{path!r} holds no optimizer state")
        try:
            sd = {
                "param_groups": om["param_groups"],
                "state": {
                    int(j): {"momentum_buffer": arrays[f"optim/{int(j)}/momentum_buffer"]}
                    for j in om["state"]
                },
            }
            opt_checked = optimizer._check_state(sd)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path!r}: optimizer state does not match: {e}") from e
    if scheduler is not None:
        if meta.get("scheduler") is None:
            raise CheckpointError(f"{path!r} holds no scheduler state")
        try:
            sched_checked = scheduler._check_state(meta["scheduler"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path!r}: scheduler state does not match: {e}") from e
    if rng is not None:
        if meta.get("rng") is None:
            raise CheckpointError(f"{path!r} holds no random generator state")
        kind = type(rng.bit_generator).__name__
        rng_state = _check_rng_state(meta["rng"], kind, "rng", path)
    mods = _rng_modules(model)
    saved = meta.get("module_rng") or {}
    if not isinstance(saved, dict) or sorted(saved) != sorted(mods):
        raise CheckpointError(
            f"{path!r}: generator states for modules {sorted(saved)}, model has {sorted(mods)}"
        )
    for name, st in saved.items():
        kind = mods[name].rng_state()["bit_generator"]
        _check_rng_state(st, kind, f"module {name!r}", path)
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{path!r}: bad epoch {epoch!r}")
    return state, opt_checked, sched_checked, rng_state, mods, saved, epoch
