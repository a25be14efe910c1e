"""The training loop: AdamW + cosine schedule, checkpoint/resume, seeded, AMP on GPU,
unchanged under ``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on GPU)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import distributed as D
from ..device import resolve_device
from ..data.augment import AugmentConfig
from ..data.reben import ReBenPatches
from ..losses import mosaic_loss
from ..models.mosaic import ModelConfig, MosaicModel
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .sampler import GlobalBatchSampler
from .schedule import cosine_lr
from .views import TwoViews


@dataclass
class TrainResult:
    model: MosaicModel
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0


def _init_distributed(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)


def build_model(cfg: TrainConfig, classes: tuple[str, ...]) -> tuple[MosaicModel, dict[str, Any] | None]:
    """A new model (or the one of ``cfg.init``), with optional pretrained encoder weights."""
    from ..io.model_file import init_encoder_from_state_dict, load_model

    card = None
    if cfg.init:
        model, card = load_model(cfg.init)
        if tuple(model.cfg.classes) != tuple(classes):
            raise ValueError(f"{cfg.init} predicts other classes than the training data's")
    else:
        model = MosaicModel(ModelConfig.preset(cfg.model, classes=classes, modalities=tuple(cfg.modalities)))
    if cfg.pretrained_s2:
        init_encoder_from_state_dict(model, "s2", cfg.pretrained_s2)
    if cfg.pretrained_s1:
        init_encoder_from_state_dict(model, "s1", cfg.pretrained_s1)
    return model, card


def set_trainable(model: MosaicModel, parts: str) -> None:
    """'all', 'head' (projectors + classifier) or 'head+N' (also the last N encoder stages)."""
    if parts == "all":
        model.requires_grad_(True)
        return
    if parts != "head" and not (parts.startswith("head+") and parts[5:].isdigit()):
        raise ValueError(f"train_parts must be 'all', 'head' or 'head+N', got {parts!r}")
    n = int(parts[5:]) if "+" in parts else 0
    model.encoders.requires_grad_(False)
    for enc in model.encoders.values():
        for stage in list(enc.stages())[len(enc.stages()) - n :] if n else []:
            stage.requires_grad_(True)


def _frozen_bn_eval(model: MosaicModel) -> None:
    """Frozen encoder stages keep their BatchNorm statistics (eval mode)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def train(
    cfg: TrainConfig,
    dataset: torch.utils.data.Dataset | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train according to ``cfg``; rank 0 writes ``cfg.out/checkpoint.*`` after every epoch."""
    device = resolve_device(cfg.device)
    _init_distributed(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = D.rank(), D.world_size()
    torch.manual_seed(cfg.seed)
    if dataset is None:
        if not cfg.data:
            raise ValueError("no training data: give --data, a folder in reBEN layout")
        dataset = ReBenPatches(cfg.data, cfg.splits, cfg.label_fraction, cfg.seed)
    classes = tuple(getattr(dataset, "classes"))
    model, _ = build_model(cfg, classes)
    set_trainable(model, cfg.train_parts)
    if world > 1 and cfg.batchnorm == "global":
        D.use_cross_rank_batchnorm(model)
    elif cfg.batchnorm not in ("global", "local"):
        raise ValueError(f"batchnorm must be 'global' or 'local', got {cfg.batchnorm!r}")
    model.to(device)
    weights = cfg.loss_weights()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    net: nn.Module = model
    if world > 1:
        unused = any(getattr(weights, t) == 0 for t in ("intra", "inter", "supcon", "bce")) or cfg.train_parts != "all"
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    dropout = cfg.modality_dropout if len(cfg.modalities) == 2 else 0.0
    views = TwoViews(dataset, cfg.seed, dropout, AugmentConfig() if cfg.augment else None)
    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, cfg.seed, rank, world)
    loader = torch.utils.data.DataLoader(views, batch_sampler=sampler, num_workers=cfg.workers)
    out = Path(cfg.out)
    start_epoch, step = 0, 0
    history: list[dict[str, float]] = []
    if cfg.resume and (out / "checkpoint.json").is_file():
        info = load_checkpoint(out, model, opt)
        start_epoch, step, history = info["epoch"], info["step"], info.get("history", [])
    total_steps = cfg.epochs * len(sampler)
    warmup = cfg.warmup_epochs * len(sampler)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    bar = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.objective}", unit="step", dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    mods = [m for m in ("s2", "s1") if m in cfg.modalities]
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        views.set_epoch(epoch)
        model.train()
        _frozen_bn_eval(model)
        sums: dict[str, float] = {}
        for batch in loader:
            lr = cosine_lr(step, total_steps, cfg.lr, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            b = batch["label"].shape[0]
            inputs = {m: torch.cat([batch[f"{m}_0"], batch[f"{m}_1"]]).to(device, non_blocking=True) for m in mods}
            present = {m: batch[f"present_{m}"].repeat(2).to(device) for m in mods}
            labels = batch["label"].to(device)
            labelled = batch["labelled"].to(device)
            has = {m: batch[f"has_{m}"].to(device) for m in mods}
            has2 = {m: h.repeat(2) for m, h in has.items()}
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                o = net(inputs.get("s2"), inputs.get("s1"), present, None if all(bool(h.all()) for h in has.values())
                        else has2)
            z = {m: [o["z"][m][:b].float(), o["z"][m][b:].float()] for m in mods}
            logits = [o["logits"][:b], o["logits"][b:]]
            terms = mosaic_loss(z, logits, labels, labelled, weights, cfg.tau, has)
            opt.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += b * world
            vals = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v
            if on_step:
                on_step({"step": step, "epoch": epoch, "lr": lr, **vals})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{vals['total']:.3f}")
        history.append({"epoch": epoch + 1, **{k: v / max(1, len(sampler)) for k, v in sums.items()}})
        if rank == 0:
            save_checkpoint(out, model, opt, {"epoch": epoch + 1, "step": step, "history": history,
                                              "config": cfg.to_dict()})
        if world > 1:
            torch.distributed.barrier()
    if bar is not None:
        bar.close()
    model.eval()
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - t0, samples=seen)
