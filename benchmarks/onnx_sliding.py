"""The engine against what a QGIS user would run instead (not a test): a Deepness-style
onnxruntime sliding-window loop, with the same weights over the same windows.

The loop is what Deepness does for a model that answers per window: read the scene's extent
into memory, normalise, cut a window at every output cell (the engine's own windows:
``windows.patch_origin``), run the ONNX model on batches of windows, write the map. Here it
gets its best batch size and as many threads as torch. The engine runs whole
(``run_scene``: model set-up, reads, passes, commit), dense and sliding, at strides 30 and 60 px,
on a 2048 x 2048 synthetic S2 + S1 scene (speed does not depend on content), alternated in
rounds; the ratios of medians are what to compare (these machines are shared and noisy).
Before timing, the ONNX loop's map is checked against the engine's sliding map (the same
windows, so the same probabilities up to float rounding).

Needs onnxruntime and onnx, a benchmark-only dependency: ``.venv/bin/pip install onnxruntime onnx``
(with the system numpy pinned: ``-c requirements/constraints-numpy1.txt`` ``numpy==$(python3 -c
'import numpy; print(numpy.__version__)')``).

Run from the repository root:  PYTHONPATH=. .venv/bin/python benchmarks/onnx_sliding.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from core.data.normalize import normalize  # noqa: E402
from core.engine import SceneRequest, run_scene  # noqa: E402
from core.engine import windows as W  # noqa: E402
from core.io.model_file import load_model  # noqa: E402
from scene_benchmark import write_scene  # noqa: E402

MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
STATS: dict[str, tuple] = {}


class WindowClassifier(nn.Module):
    """Both encoders, global pooling and the fusion head: one window in, class probabilities out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, s2: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.head(self.model.features(s2, s1)))


def export_onnx(path: str) -> tuple[str, int]:
    """The bundled model as ONNX (dynamic batch); returns (path, window size)."""
    model, card = load_model(MODEL, "cpu")
    patch = int(card["inputs"]["patch_size"])
    for m in ("s2", "s1"):  # the engine normalises with the card's statistics
        STATS[m] = (card["inputs"][m].get("mean"), card["inputs"][m].get("std"))
    net = WindowClassifier(model.eval())
    s2 = torch.zeros(2, len(model.cfg.s2_bands), patch, patch)
    s1 = torch.zeros(2, len(model.cfg.s1_bands), patch, patch)
    torch.onnx.export(net, (s2, s1), path, input_names=["s2", "s1"], output_names=["probs"],
                      dynamic_axes={"s2": {0: "b"}, "s1": {0: "b"}, "probs": {0: "b"}}, opset_version=17,
                      dynamo=False)
    return path, patch


def onnx_loop(session, s2_path: str, s1_path: str, out: str, stride: int, patch: int, batch: int) -> None:
    """The Deepness-style job: read the extent, normalise, windows in batches, write the map."""
    with rasterio.open(s2_path) as a, rasterio.open(s1_path) as b:
        s2 = normalize(a.read(), "s2", *STATS["s2"])
        s1 = normalize(b.read(), "s1", *STATS["s1"])
        profile = a.profile
    h, w = s2.shape[1:]
    rows, cols = W.output_shape(h, w, stride)
    pad = patch  # windows at the edges reach outside: zeros there (the band mean), as the engine
    s2 = np.pad(s2, ((0, 0), (pad, pad), (pad, pad)))
    s1 = np.pad(s1, ((0, 0), (pad, pad), (pad, pad)))
    cells = [(i, j) for i in range(rows) for j in range(cols)]
    probs = np.zeros((rows * cols, session.get_outputs()[0].shape[1]), np.float32)
    for s in range(0, len(cells), batch):
        chunk = cells[s: s + batch]
        org = [(W.patch_origin(i, stride, patch) + pad, W.patch_origin(j, stride, patch) + pad) for i, j in chunk]
        x2 = np.stack([s2[:, r: r + patch, c: c + patch] for r, c in org])
        x1 = np.stack([s1[:, r: r + patch, c: c + patch] for r, c in org])
        probs[s: s + len(chunk)] = session.run(None, {"s2": x2, "s1": x1})[0]
    profile.update(count=probs.shape[1], dtype="float32", width=cols, height=rows, nodata=None,
                   transform=profile["transform"] * rasterio.Affine.scale(stride), blockxsize=256, blockysize=256)
    with rasterio.open(out, "w", **profile) as d:
        d.write(probs.reshape(rows, cols, -1).transpose(2, 0, 1))


def engine_run(s2: str, s1: str, out: str, mode: str, stride: int) -> None:
    run_scene(SceneRequest(model=MODEL, optical=s2, sar=s1, outputs={"probabilities": out}, mode=mode,
                           stride=stride, probability_dtype="float32"))


def timed(f, *a) -> float:
    t0 = time.perf_counter()
    f(*a)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--strides", type=int, nargs="+", default=[30, 60])
    args = p.parse_args()
    import onnxruntime as ort

    threads = torch.get_num_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="mosaic-onnx-") as d:
        tmp = Path(d)
        s2, s1 = write_scene(tmp, args.size)
        onnx_path, patch = export_onnx(str(tmp / "model.onnx"))
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {threads} threads, "
              f"{args.size}^2 S2 + S1 scene, {patch} px windows, {os.cpu_count()} logical CPUs")

        # the same windows and weights: the ONNX map against the engine's sliding map
        st = args.strides[0]
        onnx_loop(session, s2, s1, str(tmp / "onnx.tif"), st, patch, 16)
        engine_run(s2, s1, str(tmp / "sliding.tif"), "sliding", st)
        with rasterio.open(tmp / "onnx.tif") as a, rasterio.open(tmp / "sliding.tif") as b:
            x, y = a.read(), b.read()
        ok = np.isfinite(y).all(0)
        print(f"check, stride {st} px: ONNX loop vs engine sliding on {ok.sum()} windows: max |dp| "
              f"{np.abs(x - y)[:, ok].max():.2e}, dominant class equal on {100 * (x.argmax(0) == y.argmax(0))[ok].mean():.2f} %")

        # the ONNX loop's best batch size (Deepness lets the user choose it)
        batches = {b: timed(onnx_loop, session, s2, s1, str(tmp / "o.tif"), args.strides[-1], patch, b)
                   for b in (4, 16, 64)}
        best = min(batches, key=batches.get)
        print("ONNX loop batch sizes at stride %d px: %s -> %d" % (
            args.strides[-1], ", ".join(f"{b}: {t:.1f} s" for b, t in batches.items()), best))

        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for st in args.strides:
                times.setdefault(f"onnx {st}", []).append(
                    timed(onnx_loop, session, s2, s1, str(tmp / "o.tif"), st, patch, best))
                times.setdefault(f"sliding {st}", []).append(
                    timed(engine_run, s2, s1, str(tmp / "s.tif"), "sliding", st))
                times.setdefault(f"dense {st}", []).append(
                    timed(engine_run, s2, s1, str(tmp / "d.tif"), "dense", st))
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"{k:>11} px: median {med[k]:6.2f} s  ({', '.join(f'{t:.2f}' for t in v)})")
        for st in args.strides:
            o = med[f"onnx {st}"]
            print(f"stride {st} px: dense {o / med[f'dense {st}']:.2f}x the ONNX loop, "
                  f"sliding {o / med[f'sliding {st}']:.2f}x (issue 20 asks dense >= {8 if st <= 30 else 3}x, "
                  f"sliding >= 1x)")


if __name__ == "__main__":
    main()
