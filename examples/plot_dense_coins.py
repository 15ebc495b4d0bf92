"""
A dense label map of a photograph
=================================

A tiny patch classifier learns, from a few seconds of training, which pixels of scikit-image's
``coins`` photograph lie on a coin, and ``cnncore.dense.predict`` then labels every pixel in one
pass of the d-regularly sparse network.

The labels come from a global threshold (Otsu), so they are noisy where the lighting is uneven;
the classifier sees a 15x15 patch around each pixel. Training runs the d-sparse network of the
classifier (``dense.to_dense``) on image crops with a masked cross-entropy over a few hundred
sampled pixels per crop: exactly the gradients of training on those pixels' patches one by one,
at the cost of one dense pass.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from skimage import data, filters

from cnncore import dense, models, nn
from cnncore.optim import SGD

image = data.coins().astype(np.float32) / 255.0  # (303, 384)
labels = (image > filters.threshold_otsu(image)).astype(np.int64)  # 1: coin, 0: background
x = ((image - image.mean()) / image.std())[None, None]  # (1, 1, H, W), standardized

nn.manual_seed(0)
model = models.toy15(in_channels=1, num_classes=2)  # patch 15x15, carries model.patch_size
net = dense.to_dense(model)  # shares model's Parameters
loss = nn.CrossEntropyLoss(ignore_index=-1)
opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
rng = np.random.default_rng(0)

# %%
# Training: random 64x64 crops, 256 counted pixels each, for about five seconds.
crop, counted, t0, step = 64, 256, time.perf_counter(), 0
while time.perf_counter() - t0 < 5.0 and step < 400:
    i, j = rng.integers(0, image.shape[0] - crop), rng.integers(0, image.shape[1] - crop)
    target = np.full((1, crop, crop), -1, dtype=np.int64)
    pick = rng.choice(crop * crop, counted, replace=False)
    target.reshape(-1)[pick] = labels[i : i + crop, j : j + crop].reshape(-1)[pick]
    opt.zero_grad()
    value = loss(net(x[:, :, i : i + crop, j : j + crop]), target)
    net.backward(loss.backward())
    opt.step()
    step += 1
print(f"{step} steps in {time.perf_counter() - t0:.1f} s, last loss {value:.3f}")

# %%
# Every pixel's scores in one pass (``patch_size`` comes from the model).
scores = dense.predict(model.eval(), x)  # (1, 2, H, W)
predicted = scores[0].argmax(axis=0)
print(f"agreement with the threshold labels: {(predicted == labels).mean():.3f}")

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, shown, title in zip(
    axes,
    (image, labels, predicted),
    ("coins", "threshold labels", "dense prediction (15x15 patches)"),
    strict=True,
):
    ax.imshow(shown, cmap="gray")
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()
plt.show()
