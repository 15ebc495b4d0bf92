"""The training loop: ``Trainer`` (mini-batch SGD with augmentation, a tqdm progress bar,
per-epoch loss and accuracy, repeatable runs and exact resumption from checkpoints) and ``fit``.

A run is a function of its seed: the seed fixes the order of the mini-batches, every augmentation
draw and every dropout mask (each ``Dropout`` of the model is reseeded from it).  Checkpoints hold
the generator states as well as the weights and the optimiser, so a run stopped after epoch k and
resumed with ``Trainer.resume`` ends with exactly the weights of the uninterrupted run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cnncore import _validate as v
from cnncore import device as _device
from cnncore.checkpoint import load_checkpoint, save_checkpoint
from cnncore.data import batches
from cnncore.nn.loss import CrossEntropyLoss
from cnncore.nn.module import Module, no_grad
from cnncore.optim import SGD, StepLR

__all__ = ["Trainer", "fit"]


def _correct(scores, targets: np.ndarray, ignore_index: int | None) -> tuple[int, int] | None:
    """(correct, counted) for class scores (N, K[, H, W]) and integer targets (N[, H, W])."""
    s = _device.to_numpy(scores)
    if not np.issubdtype(targets.dtype, np.integer) or targets.shape != s.shape[:1] + s.shape[2:]:
        return None
    pred = s.argmax(axis=1)
    mask = targets != ignore_index if ignore_index is not None else np.ones(targets.shape, bool)
    return int(np.sum((pred == targets) & mask)), int(mask.sum())


class Trainer:
    """Mini-batch training of ``model`` with ``optimizer``.

    Parameters
    ----------
    model, optimizer : the network and e.g. ``cnncore.optim.SGD(model.parameters(), ...)``
    loss : a loss module with ``forward(scores, targets) -> float`` and ``backward()``
        (default ``CrossEntropyLoss()``)
    scheduler : optional, e.g. ``StepLR``; stepped once per epoch
    augment : optional ``callable(images, rng) -> images`` applied to every training batch (e.g.
        ``cnncore.data.Augmentation``); if it has ``test_view(images)``, validation images go
        through that
    seed : seeds batch order, augmentation and every ``Dropout`` of the model
    checkpoint : path written atomically after every ``checkpoint_every`` epochs (and at the end)
    progress : show a tqdm progress bar per epoch
    verbose : print one line per epoch (loss, accuracy, validation, lr, time); default: progress
    """

    def __init__(
        self,
        model: Module,
        optimizer: SGD,
        loss: Module | None = None,
        scheduler: StepLR | None = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        progress: bool = True,
        verbose: bool | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss = loss if loss is not None else CrossEntropyLoss()
        self.scheduler = scheduler
        self.augment = augment
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.checkpoint_every = v.positive_int(checkpoint_every, "checkpoint_every")
        self.progress = bool(progress)
        self.verbose = self.progress if verbose is None else bool(verbose)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Reseed the batch order / augmentation generator and every module with a ``seed``
        method (``Dropout``), deterministically from ``seed``."""
        seeded = [m for _, m in self.model.named_modules() if callable(getattr(m, "seed", None))]
        children = np.random.SeedSequence(seed).spawn(1 + len(seeded))
        self.rng = np.random.default_rng(children[0])
        for m, ss in zip(seeded, children[1:], strict=True):
            m.seed(ss)

    # -- data plumbing ----------------------------------------------------------------------
    def _param_where(self) -> tuple[np.dtype, bool]:
        for p in self.model.parameters():
            return p.dtype, _device.is_cuda_array(p.data)
        return np.dtype(np.float32), False

    def _prepare(self, xb: np.ndarray):
        dtype, on_gpu = self._param_where()
        xb = np.ascontiguousarray(xb, dtype=np.float32 if on_gpu else dtype)
        return _device.to_device(xb, "cuda") if on_gpu else xb

    def _prepare_targets(self, yb: np.ndarray):
        _, on_gpu = self._param_where()
        if not on_gpu:
            return yb
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(yb))

    @staticmethod
    def _check_data(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"{name}: images and targets must be non-empty with the same first axis, got "
                f"{x.shape} and {y.shape}"
            )
        return x, y

    # -- one epoch, evaluation ---------------------------------------------------------------
    def train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, desc: str = "") -> dict:
        """One pass over (x, y) in shuffled mini-batches; returns mean loss and accuracy."""
        self.model.train()
        ignore = getattr(self.loss, "ignore_index", None)
        total_loss = correct = counted = seen = 0
        nb = -(-len(x) // batch_size)
        with tqdm(total=nb, desc=desc, disable=not self.progress, leave=False) as bar:
            for idx in batches(len(x), batch_size, self.rng):
                xb, yb = x[idx], y[idx]
                if self.augment is not None:
                    xb = self.augment(xb, self.rng)
                self.optimizer.zero_grad()
                scores = self.model(self._prepare(xb))
                loss = self.loss(scores, self._prepare_targets(yb))
                # the images need no gradient: the first layer skips it
                self.model.backward_params(self.loss.backward())
                self.optimizer.step()
                total_loss += loss * len(idx)
                seen += len(idx)
                c = _correct(scores, yb, ignore)
                if c is not None:
                    correct, counted = correct + c[0], counted + c[1]
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        return {
            "loss": total_loss / seen,
            "accuracy": correct / counted if counted else None,
        }

    def evaluate(self, x, y, batch_size: int = 256) -> dict:
        """Mean loss and accuracy on (x, y) in eval mode, without caching (the test view of the
        augmentation, if it has one, is applied)."""
        x, y = self._check_data(x, y, "evaluate")
        batch_size = v.positive_int(batch_size, "batch_size")
        if self.augment is not None and hasattr(self.augment, "test_view"):
            x = self.augment.test_view(x)
        ignore = getattr(self.loss, "ignore_index", None)
        was_training = self.model.training
        self.model.eval()
        total_loss = correct = counted = 0
        try:
            with no_grad():
                for idx in batches(len(x), batch_size):
                    scores = self.model(self._prepare(x[idx]))
                    total_loss += self.loss(scores, self._prepare_targets(y[idx])) * len(idx)
                    c = _correct(scores, y[idx], ignore)
                    if c is not None:
                        correct, counted = correct + c[0], counted + c[1]
        finally:
            self.model.train(was_training)
        return {"loss": total_loss / len(x), "accuracy": correct / counted if counted else None}

    # -- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        x,
        y,
        epochs: int,
        batch_size: int = 64,
        validation: tuple | None = None,
    ) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are done in total (a resumed trainer continues from its
        epoch).  Returns the history: one dict per epoch with ``epoch``, ``loss``, ``accuracy``,
        ``lr``, ``seconds`` and, given ``validation=(x_val, y_val)``, ``val_loss`` and
        ``val_accuracy``."""
        x, y = self._check_data(x, y, "fit")
        epochs = int(v.positive_int(epochs, "epochs"))
        batch_size = v.positive_int(batch_size, "batch_size")
        if validation is not None:
            validation = self._check_data(*validation, "validation")
        while self.epoch < epochs:
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr}
            row.update(self.train_epoch(x, y, batch_size, f"epoch {self.epoch + 1}/{epochs}"))
            if self.scheduler is not None:
                self.scheduler.step()
            if validation is not None:
                val = self.evaluate(*validation, batch_size=max(batch_size, 256))
                row["val_loss"], row["val_accuracy"] = val["loss"], val["accuracy"]
            self.epoch += 1
            row["seconds"] = time.perf_counter() - t0
            self.history.append(row)
            if self.verbose:
                tqdm.write(_format_row(row))
            if self.checkpoint and (
                self.epoch % self.checkpoint_every == 0 or self.epoch == epochs
            ):
                self.save(self.checkpoint)
        return self.history

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write model, optimiser, scheduler, generators, epoch and history (atomically)."""
        save_checkpoint(
            path,
            self.model,
            self.optimizer,
            self.scheduler,
            epoch=self.epoch,
            rng=self.rng,
            extra={"history": self.history},
        )

    def resume(self, path: str | os.PathLike) -> Trainer:
        """Restore everything ``save`` wrote; the next ``fit`` continues where that run stopped.
        A corrupt or mismatched file raises ``CheckpointError`` and changes nothing."""
        info = load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.rng)
        self.epoch = info["epoch"]
        extra = info["extra"] or {}
        self.history = list(extra.get("history", []))
        return self


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['loss']:.4f}"]
    if row.get("accuracy") is not None:
        parts.append(f"acc {row['accuracy']:.4f}")
    if "val_loss" in row:
        parts.append(f"val_loss {row['val_loss']:.4f}")
        if row.get("val_accuracy") is not None:
            parts.append(f"val_acc {row['val_accuracy']:.4f}")
    parts += [f"lr {row['lr']:.3g}", f"{row['seconds']:.1f}s"]
    return "  ".join(parts)


def fit(
    model: Module,
    x,
    y,
    optimizer: SGD,
    epochs: int,
    batch_size: int = 64,
    validation: tuple | None = None,
    **trainer_kwargs,
) -> list[dict[str, Any]]:
    """``Trainer(model, optimizer, **trainer_kwargs).fit(x, y, epochs, batch_size, validation)``."""
    return Trainer(model, optimizer, **trainer_kwargs).fit(x, y, epochs, batch_size, validation)
