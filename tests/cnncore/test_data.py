"""Augmentation and test-time averaging: geometry against torch and explicit indexing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncore import data


def images(n=3, c=2, h=7, w=9, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


@pytest.mark.parametrize("size", [(3, 4), (14, 20), (7, 5), (10, 9)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resize_matches_torch_bilinear(size, dtype):
    x = images(dtype=dtype)
    ours = data.resize(x, size)
    ref = torch.nn.functional.interpolate(
        torch.tensor(x), size=size, mode="bilinear", align_corners=False
    ).numpy()
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_rescale_shorter_side_keeps_aspect():
    assert data.rescale_shorter_side(images(h=6, w=9), 4).shape == (3, 2, 4, 6)
    assert data.rescale_shorter_side(images(h=10, w=5), 5).shape == (3, 2, 10, 5)


def test_mean_subtraction():
    x = images()
    m = data.mean_image(x)
    np.testing.assert_allclose(m, x.mean(axis=0))
    np.testing.assert_allclose(data.subtract_mean(x, m).mean(axis=0), 0, atol=1e-12)
    per_channel = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(data.subtract_mean(x, per_channel), x - per_channel[:, None, None])
    with pytest.raises(ValueError, match="mean"):
        data.subtract_mean(x, np.zeros((2, 3, 3)))


def test_random_crop_takes_windows_of_the_padded_image():
    x = images(n=20)
    rng = np.random.default_rng(1)
    out = data.random_crop(x, (5, 6), rng, padding=1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (a, b)
            for a in range(padded.shape[2] - 4)
            for b in range(padded.shape[3] - 5)
            if np.array_equal(padded[i, :, a : a + 5, b : b + 6], out[i])
        ]
        assert hits, "crop is not a window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets vary from image to image
    again = data.random_crop(x, (5, 6), np.random.default_rng(1), padding=1)
    np.testing.assert_array_equal(out, again)  # repeatable from the seed
    other = data.random_crop(x, (5, 6), np.random.default_rng(2), padding=1)
    assert not np.array_equal(out, other)
    with pytest.raises(ValueError, match="crop size"):
        data.random_crop(x, 12, rng)


def test_random_flip():
    x = images(n=64)
    out = data.random_flip(x, np.random.default_rng(2))
    flipped = [np.array_equal(o, xi[:, :, ::-1]) for o, xi in zip(out, x, strict=True)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48
    np.testing.assert_array_equal(data.random_flip(x, np.random.default_rng(0), p=0.0), x)


def test_scale_jitter_is_crop_of_rescaled_image():
    x = images(n=4, h=8, w=10)
    rng = np.random.default_rng(3)
    out = data.scale_jitter(x, 6, (6, 9), rng)
    assert out.shape == (4, 2, 6, 6)
    for i in range(4):
        found = False
        for s in range(6, 10):
            r = data.rescale_shorter_side(x[i : i + 1], s)[0]
            for a in range(r.shape[1] - 5):
                for b in range(r.shape[2] - 5):
                    found |= np.allclose(r[:, a : a + 6, b : b + 6], out[i])
        assert found
    with pytest.raises(ValueError, match="S_min"):
        data.scale_jitter(x, 6, (5, 9), rng)


def test_ten_crop_matches_explicit_crops():
    x = images(n=2, h=6, w=7)
    crops = data.ten_crop(x, (4, 5))
    assert crops.shape == (10, 2, 2, 4, 5)
    np.testing.assert_array_equal(crops[0], x[:, :, :4, :5])
    np.testing.assert_array_equal(crops[3], x[:, :, 2:, 2:])
    np.testing.assert_array_equal(crops[4], x[:, :, 1:5, 1:6])
    for i in range(5):
        np.testing.assert_array_equal(crops[5 + i], crops[i][..., ::-1])


def test_augmentation_pipeline_and_test_view():
    x = images(n=5, h=8, w=8)
    mean = data.mean_image(x)
    aug = data.Augmentation(crop_size=8, padding=1, flip=True, mean=mean)
    out = aug(x, np.random.default_rng(4))
    assert out.shape == x.shape
    np.testing.assert_allclose(aug.test_view(x), x - mean)
    aug2 = data.Augmentation(crop_size=6, scale_range=(6, 8))
    assert aug2(x, np.random.default_rng(0)).shape == (5, 2, 6, 6)
    np.testing.assert_allclose(aug2.test_view(x), data.center_crop(data.resize(x, 6), 6))


def test_batches_cover_every_sample_once():
    idx = np.concatenate(list(data.batches(23, 5, np.random.default_rng(0))))
    assert sorted(idx.tolist()) == list(range(23))
    assert [len(b) for b in data.batches(23, 5)] == [5, 5, 5, 5, 3]


def fully_convolutional(seed):
    import cnncore.nn as nn

    nn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten()).double()


def softmax_rows(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_proba_ten_crop_multiscale_and_model_averaging():
    import cnncore.nn as nn

    x = images(n=3, h=8, w=10)
    m1, m2 = fully_convolutional(0), fully_convolutional(1)
    m1.train()
    with nn.no_grad():
        direct = softmax_rows(m1(x))
    p = data.predict_proba(m1, x, batch_size=2)
    np.testing.assert_allclose(p, direct, rtol=1e-12)
    assert m1.training  # mode restored
    crops = data.ten_crop(x, 6)
    with nn.no_grad():
        want = np.mean([softmax_rows(m1(c)) for c in crops], axis=0)
    np.testing.assert_allclose(data.predict_ten_crop(m1, x, 6), want, rtol=1e-12)
    with nn.no_grad():
        scales = [softmax_rows(m1(data.rescale_shorter_side(x, q))) for q in (6, 9)]
    np.testing.assert_allclose(data.predict_multiscale(m1, x, [6, 9]), np.mean(scales, 0))
    tc = data.predict_ten_crop(m1, data.rescale_shorter_side(x, 6), 5)
    np.testing.assert_allclose(data.predict_multiscale(m1, x, [6], crop_size=5), tc, rtol=1e-12)
    avg = data.average_models([m1, m2], x, data.predict_multiscale, scales=[6, 9])
    want = (data.predict_multiscale(m1, x, [6, 9]) + data.predict_multiscale(m2, x, [6, 9])) / 2
    np.testing.assert_allclose(avg, want, rtol=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        data.average_models([], x)


def test_score_maps_are_averaged_after_softmax():
    import cnncore.nn as nn

    nn.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, 3)).double()
    x = images(n=2, h=5, w=6)
    with nn.no_grad():
        maps = net(x)  # (2, 3, 3, 4)
    e = np.exp(maps - maps.max(axis=1, keepdims=True))
    want = (e / e.sum(axis=1, keepdims=True)).mean(axis=(2, 3))
    np.testing.assert_allclose(data.predict_proba(net, x), want, rtol=1e-12)
