"""One-GPU benchmark: training samples/s and dense-inference megapixels/s, in under 5 minutes.

Training: full MoSAiC steps (two views, both streams, all loss terms, AdamW, bfloat16
autocast) of the small and ResNet-50 configurations on synthetic 120x120 patches (speed
does not depend on content). Inference: both encoders run fully convolutionally over
2048x2048 S2 + S1 tiles with pooling and the head, as the scene engine does, in bfloat16
and float32. Prints one line per measurement.

    python benchmarks/gpu_benchmark.py [--device cuda:0] [--seconds 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.losses import LossWeights, mosaic_loss  # noqa: E402
from core.models.mosaic import ModelConfig, MosaicModel  # noqa: E402


def _timed(fn, seconds: float, device: torch.device) -> tuple[int, float]:
    """Run ``fn`` for about ``seconds`` after 3 warm-up calls; (calls, elapsed)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
        if n % 5 == 0:
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    return n, time.perf_counter() - t0


def train_rate(preset: str, batch: int, device: torch.device, seconds: float) -> float:
    torch.manual_seed(0)
    model = MosaicModel(ModelConfig.preset(preset)).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    s2 = torch.randn(2 * batch, 12, 120, 120, device=device).to(memory_format=torch.channels_last)
    s1 = torch.randn(2 * batch, 2, 120, 120, device=device).to(memory_format=torch.channels_last)
    labels = (torch.rand(batch, 19, device=device) < 0.2).float()
    labelled = torch.ones(batch, dtype=torch.bool, device=device)
    w = LossWeights.preset("mosaic")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            o = model(s2, s1)
        z = {m: [o["z"][m][:batch].float(), o["z"][m][batch:].float()] for m in ("s2", "s1")}
        loss = mosaic_loss(z, [o["logits"][:batch], o["logits"][batch:]], labels, labelled, w)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n, dt = _timed(step, seconds, device)
    return n * batch / dt


@torch.no_grad()
def infer_rate(preset: str, tile: int, device: torch.device, seconds: float, dtype: torch.dtype | None) -> float:
    """Megapixels/s of dense classification: encoders over a tile, 120 px window pooling, head."""
    model = MosaicModel(ModelConfig.preset(preset)).to(device).eval().to(memory_format=torch.channels_last)
    s2 = torch.randn(1, 12, tile, tile, device=device).to(memory_format=torch.channels_last)
    s1 = torch.randn(1, 2, tile, tile, device=device).to(memory_format=torch.channels_last)
    stride = model.output_stride
    k = max(1, round(120 / stride))

    def run() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            feats = {m: model.encoders[m](x) for m, x in (("s2", s2), ("s1", s1))}
            pooled = {m: F.avg_pool2d(f.float(), k, stride=1) for m, f in feats.items()}
            logits = sum(torch.einsum("bchw,kc->bkhw", pooled[m], model.head.linear[m].weight) for m in pooled) / 2
            torch.sigmoid(logits + model.head.bias[None, :, None, None])

    n, dt = _timed(run, seconds, device)
    return n * tile * tile / dt / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per measurement (default: 15)")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU (use benchmarks/train_throughput.py on a CPU)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    for preset, batch in (("small", 256), ("resnet50", 128)):
        print(f"train {preset:<9} batch {batch:>4} (x2 views, S1+S2, bf16): "
              f"{train_rate(preset, batch, device, a.seconds):9.0f} samples/s", flush=True)
    for preset in ("small", "resnet50"):
        for name, dt in (("bf16", torch.bfloat16), ("fp32/tf32", None)):
            print(f"dense inference {preset:<9} 2048x2048 S1+S2 tile, {name:<9}: "
                  f"{infer_rate(preset, 2048, device, a.seconds / 2, dt):8.1f} megapixels/s", flush=True)
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
