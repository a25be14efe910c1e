"""Worker for test_distributed.py: trains a few steps, writes weights + per-step losses.

Run as ``python ddp_train_worker.py OUT [batchnorm]`` (one process) or under
``torch.distributed.run --nproc_per_node=2`` (two processes); both must give the same model.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import distributed as D  # noqa: E402
from core.paths import SAMPLE_REBEN  # noqa: E402
from core.train.config import TrainConfig  # noqa: E402
from core.train.loop import train  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    bn = sys.argv[2] if len(sys.argv) > 2 else "global"
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    steps: list[dict] = []
    cfg = TrainConfig(
        data=str(SAMPLE_REBEN), out=str(out / "run"), splits=("validation",), label_fraction=0.5,
        epochs=2, batch_size=8, lr=1e-3, warmup_epochs=0, seed=3, device="cpu", progress=False,
        batchnorm=bn,
    )
    res = train(cfg, on_step=lambda s: steps.append(s))
    (out / f"steps{D.rank()}.json").write_text(json.dumps(steps))
    if D.rank() == 0:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, str(out / "weights.safetensors"))


if __name__ == "__main__":
    main()
