"""
Pixelwise classification of scattered digits
============================================

Pixelwise classification on real data: handwritten digits scattered on a noisy background.

Every pixel is labelled background (0) or the class of the digit it belongs to (1 + digit), using
scikit-learn's bundled 8x8 digits (no download), enlarged 2x.  A pixel65-style patch classifier
(by default a smaller one with 33x33 patches, ``--net pixel65`` for the benchmark network) is
trained with the d-sparse network (``cnncore.dense.to_dense``) and a masked cross-entropy on
sampled pixels, i.e. exactly patch-by-patch training of those pixels at a cost that does not grow
with their number.  The script reports the pixel accuracy on held-out images, the time per
iteration against patch-by-patch training of the same pixels (and checks both give the same
gradients), and writes the predicted label map as ``--out``/pixelwise_digits.png (default folder
``examples_out/``, ignored by git).

    python examples/pixelwise_digits.py                 # about 2 minutes on 2 cores
    python examples/pixelwise_digits.py --net pixel65 --iters 600 --out results
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np

from cnncore import dense, nn
from cnncore.models import pixel65
from cnncore.optim import SGD

BACKGROUND = 0
CLASSES = 11  # background + 10 digits
IGNORE = -1


def pixel33(in_channels: int = 1, num_classes: int = CLASSES) -> nn.Sequential:
    """pixel65 made smaller: patch 33, conv 5x5 (16), max 2x2/2, conv 5x5 (32), max 2x2/2,
    Linear 800->64, Linear 64->classes (33 -> 29 -> 14 -> 10 -> 5; receptive field 32)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def load_digits_split(seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    cut = int(0.75 * len(order))
    imgs = d.images.astype(np.float32) / 16.0
    return (imgs[order[:cut]], d.target[order[:cut]]), (imgs[order[cut:]], d.target[order[cut:]])


def make_scene(digits, labels, size: int, count: int, rng):
    """A ``size`` x ``size`` image with ``count`` digits (enlarged 2x to 16x16, not overlapping)
    on a noisy background, and its label map (background 0, digit pixels 1 + digit)."""
    img = rng.normal(0.0, 0.08, (size, size)).astype(np.float32)
    img += np.linspace(-0.1, 0.1, size, dtype=np.float32)[None, :]  # a gentle illumination ramp
    lab = np.zeros((size, size), np.int64)
    taken = np.zeros((size, size), bool)
    for _ in range(count):
        for _attempt in range(50):
            i, j = rng.integers(0, size - 16, 2)
            if not taken[max(i - 2, 0) : i + 18, max(j - 2, 0) : j + 18].any():
                break
        else:
            continue
        k = rng.integers(len(labels))
        big = np.kron(digits[k], np.ones((2, 2), np.float32))
        img[i : i + 16, j : j + 16] += big
        lab[i : i + 16, j : j + 16][big > 0.25] = 1 + labels[k]
        taken[i : i + 16, j : j + 16] = True
    return img, lab


def make_set(split, n: int, size: int, count: int, rng):
    scenes = [make_scene(*split, size, count, rng) for _ in range(n)]
    x = np.stack([s[0] for s in scenes])[:, None]  # (n, 1, size, size)
    y = np.stack([s[1] for s in scenes])
    return x, y


def sample_pixels(labels: np.ndarray, n: int, rng) -> np.ndarray:
    """Targets with ``n`` sampled pixels per image (half digit pixels, half background), the
    rest ``IGNORE``: the error mask."""
    out = np.full(labels.shape, IGNORE, np.int64)
    for b in range(labels.shape[0]):
        flat = labels[b].reshape(-1)
        fg, bg = np.flatnonzero(flat != BACKGROUND), np.flatnonzero(flat == BACKGROUND)
        pick = np.concatenate(
            [
                rng.choice(fg, min(n // 2, fg.size), replace=False),
                rng.choice(bg, min(n - min(n // 2, fg.size), bg.size), replace=False),
            ]
        )
        out[b].reshape(-1)[pick] = flat[pick]
    return out


def patch_step(model, loss, opt, x, targets, P):
    """One iteration of patch-by-patch training on the counted pixels of ``targets``."""
    t = (P - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (t, P // 2), (t, P // 2)))
    n, i, j = np.nonzero(targets != IGNORE)
    patches = np.stack([xp[a, :, b : b + P, c : c + P] for a, b, c in zip(n, i, j, strict=True)])
    opt.zero_grad()
    value = loss(model(patches), targets[n, i, j])
    model.backward(loss.backward())
    opt.step()
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--net", choices=("pixel33", "pixel65"), default="pixel33")
    ap.add_argument("--size", type=int, default=64, help="scene size (pixels)")
    ap.add_argument("--digits", type=int, default=4, help="digits per scene")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=2, help="scenes per iteration")
    ap.add_argument("--pixels", type=int, default=2048, help="sampled pixels per scene")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="examples_out", help="folder for the PNG")
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    nn.manual_seed(a.seed)
    train_split, test_split = load_digits_split(a.seed)
    xtr, ytr = make_set(train_split, 64, a.size, a.digits, rng)
    xte, yte = make_set(test_split, 8, a.size, a.digits, rng)

    if a.net == "pixel65":
        P, model = 65, pixel65(in_channels=1, num_classes=CLASSES)
    else:
        P, model = 33, pixel33()
    net = dense.to_dense(model, P)  # shares model's Parameters
    loss = nn.CrossEntropyLoss(ignore_index=IGNORE)
    opt = SGD(model.parameters(), lr=a.lr, momentum=0.9)
    print(dense.cost_table(model, P, (a.size, a.size)))

    # the same gradients as patch-by-patch training (checked once, float32)
    idx = rng.choice(len(xtr), a.batch, replace=False)
    tgt = sample_pixels(ytr[idx], a.pixels, rng)
    model.zero_grad()
    loss(net(xtr[idx]), tgt)
    net.backward(loss.backward())
    g_dense = [p.grad.copy() for p in model.parameters()]
    ref = copy.deepcopy(model)
    patch_step(ref, loss, SGD(ref.parameters(), lr=0.0), xtr[idx], tgt, P)
    rel = max(
        float(np.abs(g - r.grad).max() / (np.abs(r.grad).max() + 1e-30))
        for g, r in zip(g_dense, ref.parameters(), strict=True)
    )
    print(f"masked d-sparse gradients vs patch-by-patch: max relative difference {rel:.1e}")
    model.zero_grad()

    t_dense = []
    for it in range(a.iters):
        idx = rng.choice(len(xtr), a.batch, replace=False)
        tgt = sample_pixels(ytr[idx], a.pixels, rng)
        t0 = time.perf_counter()
        opt.zero_grad()
        value = loss(net(xtr[idx]), tgt)
        net.backward(loss.backward())
        opt.step()
        t_dense.append(time.perf_counter() - t0)
        if it % 50 == 0 or it == a.iters - 1:
            print(f"iter {it:4d}  loss {value:.3f}  ({t_dense[-1] * 1e3:.0f} ms)")

    # patch-by-patch training of the same number of pixels, timed on a copy
    twin = copy.deepcopy(model)
    twin_opt = SGD(twin.parameters(), lr=a.lr, momentum=0.9)
    t_patch = []
    for _ in range(3):
        idx = rng.choice(len(xtr), a.batch, replace=False)
        tgt = sample_pixels(ytr[idx], a.pixels, rng)
        t0 = time.perf_counter()
        patch_step(twin, loss, twin_opt, xtr[idx], tgt, P)
        t_patch.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    scores = dense.predict(model.eval(), xte, P)
    t_pred = time.perf_counter() - t0
    pred = scores.argmax(axis=1)
    acc = float((pred == yte).mean())
    fg = yte != BACKGROUND
    fg_acc = float((pred[fg] == yte[fg]).mean())
    n_pix = a.batch * a.pixels
    print(
        f"\npixel accuracy on {len(xte)} held-out {a.size}x{a.size} scenes: {acc:.3f} "
        f"(digit pixels {fg_acc:.3f}, background share {1 - fg.mean():.2f})"
    )
    print(
        f"time per iteration ({n_pix} sampled pixels): d-sparse {np.median(t_dense) * 1e3:.0f} ms, "
        f"patch-by-patch {np.median(t_patch) * 1e3:.0f} ms "
        f"({np.median(t_patch) / np.median(t_dense):.1f}x)"
    )
    print(f"prediction of {len(xte)} scenes (d-sparse): {t_pred:.2f} s")
    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "pixelwise_digits.png")
    write_png(png, xte[:3, 0], yte[:3], pred[:3])
    print(f"wrote {png}")


def write_png(path: str, images, truth, pred) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colors = ["#1f3b73"] + [plt.get_cmap("tab10")(k) for k in range(10)]
    cmap = ListedColormap(colors)
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n + 0.6), squeeze=False)
    for r in range(n):
        for c, (arr, title) in enumerate(
            ((images[r], "image"), (truth[r], "labels"), (pred[r], "predicted (d-sparse)"))
        ):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(arr, cmap="gray")
            else:
                ax.imshow(arr, cmap=cmap, vmin=-0.5, vmax=CLASSES - 0.5, interpolation="nearest")
            ax.set_title(title if r == 0 else "")
            ax.axis("off")
    names = ["background"] + [f"digit {k}" for k in range(10)]
    handles = [Patch(color=colors[k], label=names[k]) for k in range(CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
