"""The few torch.distributed helpers the method needs, all no-ops in a single process.

Contrastive negatives are gathered across ranks *with* gradients (autograd all-gather),
so each rank's features also receive the gradient of the other ranks' anchors; each
rank then scores only its local anchors and the losses are normalised by global counts,
which makes DDP's gradient average equal to the single-process gradient of the same
global batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [n, ...] of every rank along dim 0, keeping the autograd graph."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (count) tensor over ranks, without gradient."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch.

    torch's SyncBatchNorm only runs on GPUs; this one uses autograd all-reduce, so it
    works on the CPU ``gloo`` backend too and keeps the parameter names of BatchNorm2d.
    Per-rank statistics would make 2 ranks of batch 8 a different model from 1 rank of
    batch 16, and let contrastive losses exploit intra-rank BN leakage.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        n = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), n])
        stats = all_reduce(stats)
        c = x.shape[1]
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c : 2 * c] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
        y = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def use_cross_rank_batchnorm(model: nn.Module) -> nn.Module:
    """Switch every BatchNorm2d of ``model`` to CrossRankBatchNorm2d in place (same state dict)."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = CrossRankBatchNorm2d
    return model
