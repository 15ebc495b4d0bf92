"""
Local contrast normalization of a photograph
============================================

``cnncore.functional.local_contrast_norm`` (Jarrett et al. 2009) on scikit-image's ``camera``
photograph: each pixel minus the Gaussian-weighted mean of its neighbourhood, divided by the
local standard deviation (or by its mean over the image, where the neighbourhood is flatter).
Shadows and highlights end up with the same contrast; the sky, nearly flat, stays flat.
"""

import matplotlib.pyplot as plt
import numpy as np
from skimage import data

import cnncore

image = data.camera().astype(np.float32) / 255.0  # (512, 512) in [0, 1]
x = image[None, None]  # (N, C, H, W) = (1, 1, 512, 512)

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
axes[0].imshow(image, cmap="gray")
axes[0].set_title("camera")
for ax, size in zip(axes[1:], (9, 25), strict=True):
    y = cnncore.functional.local_contrast_norm(x, size=size, sigma=size / 4)
    ax.imshow(y[0, 0], cmap="gray", vmin=-2.5, vmax=2.5)
    ax.set_title(f"LCN, {size}x{size} window")
    print(f"size {size}: output mean {y.mean():+.3f}, std {y.std():.3f}")
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
