"""Training throughput (samples/s) and time per epoch of the small and ResNet-50 configurations.

A benchmark, not a test: it prints figures measured in one run on this machine. Each
configuration trains full MoSAiC steps (two augmented views, both streams, all four loss
terms) on real patches of the bundled sample, after warm-up steps that are not timed.
The time per epoch is given for the bundled training split and projected for the full
reBEN training split (237,871 patches).

    python benchmarks/train_throughput.py [--steps N] [--device auto]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.reben import ReBenPatches  # noqa: E402
from core.losses import LossWeights, mosaic_loss  # noqa: E402
from core.models.mosaic import ModelConfig, MosaicModel  # noqa: E402
from core.paths import SAMPLE_REBEN  # noqa: E402
from core.device import resolve_device  # noqa: E402
from core.train.views import TwoViews  # noqa: E402

REBEN_TRAIN = 237_871


def bench(preset: str, batch: int, steps: int, warmup: int, device: torch.device, data: TwoViews) -> float:
    """Samples per second of full training steps (forward, MoSAiC loss, backward, AdamW)."""
    torch.manual_seed(0)
    model = MosaicModel(ModelConfig.preset(preset)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    use_amp = device.type == "cuda"
    items = [data[i % len(data)] for i in range(batch)]
    b = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    s2 = torch.cat([b["s2_0"], b["s2_1"]])
    s1 = torch.cat([b["s1_0"], b["s1_1"]])
    w = LossWeights.preset("mosaic")

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            o = model(s2, s1)
        z = {m: [o["z"][m][:batch].float(), o["z"][m][batch:].float()] for m in ("s2", "s1")}
        loss = mosaic_loss(z, [o["logits"][:batch], o["logits"][batch:]], b["label"], b["labelled"], w)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default: 5)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("--batch-small", type=int, default=16)
    p.add_argument("--batch-resnet50", type=int, default=8)
    a = p.parse_args()
    device = resolve_device(a.device)
    data = TwoViews(ReBenPatches(SAMPLE_REBEN, ("train",)), seed=0)
    n_bundled = len(data)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'})"
          f", torch {torch.__version__}")
    print(f"{'config':<10} {'batch':>5} {'samples/s':>10} {'epoch bundled (29)':>19} {'epoch reBEN train':>18}")
    for preset, batch in (("small", a.batch_small), ("resnet50", a.batch_resnet50)):
        sps = bench(preset, batch, a.steps, 2, device, data)
        hours = REBEN_TRAIN / sps / 3600
        print(f"{preset:<10} {batch:>5} {sps:>10.1f} {n_bundled / sps:>17.1f} s {hours:>16.1f} h")


if __name__ == "__main__":
    main()
