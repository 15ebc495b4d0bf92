"""
Training a small CNN on handwritten digits
==========================================

Train a small CNN on scikit-learn's handwritten digits (8x8 images, 10 classes, no download).

    python examples/train_digits.py                 # train, checkpoint every epoch, report
    python examples/train_digits.py --resume        # continue from the last checkpoint

The checkpoint is ``--out``/train_digits.npz (default folder ``examples_out/``, ignored by git)
unless ``--checkpoint`` names another file.

Augmentation: mean-image subtraction (then scaling to unit variance) and random 8x8 crops of
the image zero padded by one pixel (shifts of up to one pixel; no flips: a mirrored digit is
another symbol).  Test time: class
posteriors averaged over the 5 crops of the padded test image (4 corners and the centre).
Everything is seeded: two runs print the same numbers.
"""

from __future__ import annotations

import argparse
import os
import time

# cnncore first: it sets OpenMP's passive wait policy before scikit-learn can load an OpenMP runtime
import cnncore.nn as nn
from cnncore.data import Augmentation, mean_image, predict_proba, ten_crop
from cnncore.optim import SGD, MultiStepLR
from cnncore.train import Trainer

# isort: split
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits


def digits_cnn() -> nn.Sequential:
    """1x8x8 -> 10 scores: two 3x3 convolutions, one max pooling, two fully connected layers."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 64 x 4 x 4
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(1024, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def five_crop_posteriors(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Posteriors averaged over the 4 corner crops and the centre crop of the padded images."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    crops = ten_crop(padded, 8)[:5]  # the mirrored five are left out for digits
    return np.mean([predict_proba(model, c) for c in crops], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="examples_out", help="folder for the checkpoint")
    ap.add_argument("--checkpoint", help="checkpoint file (default: OUT/train_digits.npz)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads (default 1: the matrices of 8x8 images are too small to share "
        "between threads; 0 keeps the libraries' defaults)",
    )
    ap.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines stay)")
    args = ap.parse_args()
    if args.checkpoint is None:
        os.makedirs(args.out, exist_ok=True)
        args.checkpoint = os.path.join(args.out, "train_digits.npz")

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    if args.subset is not None:
        x_train, y_train = x_train[: args.subset], y_train[: args.subset]
    # the training set's mean image is subtracted from every image, then pixels scaled to unit
    # standard deviation (both from the training images only)
    mean = mean_image(x_train)
    std = float(np.std(x_train - mean))
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    nn.manual_seed(args.seed)
    model = digits_cnn()
    if args.threads > 0:
        # one pass first loads the kernels' BLAS and OpenMP libraries, so the limit reaches them
        with nn.no_grad():
            model.eval()(x_train[:1])
        model.train()
        _thread_limits = threadpool_limits(limits=args.threads)  # in force for the whole run
    opt = SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = MultiStepLR(opt, [max(1, int(args.epochs * f)) for f in (0.6, 0.85)], 0.1)
    trainer = Trainer(
        model,
        opt,
        scheduler=sched,
        augment=Augmentation(crop_size=8, padding=1),
        seed=args.seed,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        verbose=True,
    )
    if args.resume and os.path.exists(args.checkpoint):
        trainer.resume(args.checkpoint)
        print(f"resumed from {args.checkpoint} after epoch {trainer.epoch}")

    t0 = time.perf_counter()
    trainer.fit(x_train, y_train, args.epochs, args.batch_size, validation=(x_test, y_test))
    train_s = time.perf_counter() - t0

    single = float(np.mean(predict_proba(model, x_test).argmax(1) == y_test))
    five = float(np.mean(five_crop_posteriors(model, x_test).argmax(1) == y_test))
    print(
        f"held-out accuracy ({len(y_test)} images): {single:.4f} single view, {five:.4f} averaged "
        f"over 5 crops; training {train_s:.1f} s for {args.epochs} epochs "
        f"({len(y_train)} training images); checkpoint: {args.checkpoint}"
    )


if __name__ == "__main__":
    main()
