"""Operations per pixel of each method, and the theoretical speedup of d-sparse over patch scanning.

Counts, per layer: ``macs`` (multiply-accumulates of convolutions and Linear layers, by the rule of
``cnncore.summary``: ``cnncore.nn.shapes.macs_per_position``), ``pool`` (window elements read by
pooling) and ``pointwise`` (elements through activations, LRN, ...); ``ops = macs + pool +
pointwise``.  For an image size the counts are exact (the maps of the
converted networks on the image's block, borders included); without one they are the limit of a
large image (no borders).  Patch scanning costs the classifier's count on one patch per pixel; the
d-sparse network one output per layer and pixel; FCN shift and stitch ``S_h*S_w`` passes, each
computing a layer at the grid of its output stride ``D``, i.e. ``S_h*S_w / (D_h*D_w)`` outputs per
pixel.  Read measured speedups against ``speedup``: the model ignores how fast each kernel runs.
"""

from __future__ import annotations

from typing import Any

from cnncore import _validate as v
from cnncore.dense.convert import Plan, Stage, analyze
from cnncore.nn.module import Module
from cnncore.nn.shapes import macs_per_position
from cnncore_kernels.geometry import out_size

KINDS = ("macs", "pool", "pointwise")


def _per_output(st: Stage) -> tuple[str, int]:
    """(kind of count, count per output element) of one layer."""
    if st.kind in ("conv", "linear"):
        # summary's rule; a Linear after Flatten is one position of its whole-map convolution
        return "macs", macs_per_position(st.module, st.in_shape)
    if st.kind in ("maxpool", "avgpool"):
        return "pool", st.kernel[0] * st.kernel[1]  # per output element (times channels below)
    return "pointwise", 1


def _channels(st: Stage, plan: Plan) -> int:
    c = st.out_shape[0]
    return plan.in_channels if c is None else int(c)


def _layer_counts(plan: Plan, st: Stage, positions: float) -> dict[str, float]:
    kind, per = _per_output(st)
    n = per * positions if kind == "macs" else per * positions * _channels(st, plan)
    return {kind: n}


def _zero() -> dict[str, float]:
    return dict.fromkeys(KINDS, 0.0)


def _add(a: dict[str, float], b: dict[str, float], scale: float = 1.0) -> None:
    for k, val in b.items():
        a[k] += val * scale


def _maps(plan: Plan, size: tuple[int, int], dense: bool) -> list[tuple[Stage, int]]:
    """(stage, output positions) of each layer of the converted network on an input of ``size``."""
    h, w = size
    out = []
    for st in plan.dense_stages:
        if st.spatial:
            s = (1, 1) if dense else st.stride
            d = st.dense_dilation if dense else st.dilation
            h = out_size(h, st.kernel[0], s[0], 0, d[0])  # no padding in a converted network
            w = out_size(w, st.kernel[1], s[1], 0, d[1])
        out.append((st, max(h, 0) * max(w, 0)))
    return out


def _per_layer(plan: Plan, image_size: tuple[int, int] | None) -> list[dict[str, Any]]:
    """One row per converted layer: its counts per pixel for each method."""
    R, S = plan.receptive_field, plan.stride
    rows: list[dict[str, Any]] = []
    patch_positions = {st.name: n for st, n in _maps(plan, plan.patch, dense=False)}
    if image_size is not None:
        H, W = image_size
        npix = H * W
        dense_pos = dict((st.name, n) for st, n in _maps(plan, (H + R[0] - 1, W + R[1] - 1), True))
        fcn_pos = dict.fromkeys(dense_pos, 0)
        for a in range(min(S[0], H)):
            for b in range(min(S[1], W)):
                for st, n in _maps(plan, (H + R[0] - 1 - a, W + R[1] - 1 - b), False):
                    fcn_pos[st.name] += n
    for st in plan.dense_stages:
        D = (st.step[0] * st.stride[0], st.step[1] * st.stride[1])
        if image_size is None:
            dense_n = 1.0
            fcn_n = S[0] * S[1] / (D[0] * D[1])
        else:
            dense_n = dense_pos[st.name] / npix
            fcn_n = fcn_pos[st.name] / npix
        rows.append(
            {
                "name": st.name,
                "kind": st.kind,
                "patchwise": _layer_counts(plan, st, patch_positions[st.name]),
                "fcn": _layer_counts(plan, st, fcn_n),
                "dsparse": _layer_counts(plan, st, dense_n),
            }
        )
    return rows


def cost(
    model: Module | Plan,
    patch_size: int | tuple[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Operations per pixel of ``"patchwise"``, ``"fcn"`` and ``"dsparse"`` for a patch classifier.

    ``model``: a patch classifier (with ``patch_size``) or a ``Plan``.  ``image_size``: ``(H, W)``
    for exact counts on that image, None for the large-image limit.  Returns a dict with
    ``per_pixel[method]`` (``macs``, ``pool``, ``pointwise``, ``ops``), ``speedup[method]`` (ops
    of patch scanning over ops of the method), ``speedup_macs[method]`` and ``layers`` (one row per
    layer).
    """
    plan = model if isinstance(model, Plan) else analyze(model, patch_size)
    size = None if image_size is None else v.positive_pair(image_size, "image_size")
    layers = _per_layer(plan, size)
    per_pixel = {}
    for method in ("patchwise", "fcn", "dsparse"):
        tot = _zero()
        for row in layers:
            _add(tot, row[method])
        tot["ops"] = sum(tot[k] for k in KINDS)
        per_pixel[method] = tot
    base = per_pixel["patchwise"]
    return {
        "patch": plan.patch,
        "receptive_field": plan.receptive_field,
        "stride": plan.stride,
        "image_size": size,
        "per_pixel": per_pixel,
        "speedup": {m: base["ops"] / per_pixel[m]["ops"] for m in ("fcn", "dsparse")},
        "speedup_macs": {m: base["macs"] / per_pixel[m]["macs"] for m in ("fcn", "dsparse")}
        if base["macs"]
        else {},
        "layers": layers,
    }


def _fmt(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def cost_table(
    model: Module | Plan,
    patch_size: int | tuple[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> str:
    """``cost`` as text: operations per pixel of each layer and method, totals and speedups."""
    c = cost(model, patch_size, image_size)
    where = "large-image limit" if c["image_size"] is None else f"{c['image_size']} image"
    lines = [
        f"patch {c['patch']}, receptive field {c['receptive_field']}, total stride {c['stride']}"
        f" ({where}); operations per pixel",
        f"{'layer':<16}{'kind':<10}{'patchwise':>12}{'fcn':>12}{'dsparse':>12}",
    ]
    for row in c["layers"]:
        vals = [sum(row[m].values()) for m in ("patchwise", "fcn", "dsparse")]
        lines.append(
            f"{row['name']:<16}{row['kind']:<10}" + "".join(f"{_fmt(x):>12}" for x in vals)
        )
    tot = [c["per_pixel"][m]["ops"] for m in ("patchwise", "fcn", "dsparse")]
    lines.append(f"{'total':<26}" + "".join(f"{_fmt(x):>12}" for x in tot))
    lines.append(
        f"theoretical speedup over patch scanning: dsparse {c['speedup']['dsparse']:.1f}x, "
        f"fcn {c['speedup']['fcn']:.1f}x (ops); MACs only: "
        + ", ".join(f"{m} {s:.1f}x" for m, s in c["speedup_macs"].items())
    )
    return "\n".join(lines)
