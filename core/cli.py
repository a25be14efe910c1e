"""Command line: ``python -m core {train,evaluate,thresholds,export,demo,classify,embed,finetune}`` (run from the plugin folder).

Runs unchanged under ``torchrun --nproc_per_node=N -m core train ...``.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .paths import SAMPLE_REBEN

OBJECTIVES = ("mosaic", "supervised", "simclr", "clip", "contrastive")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch of 0 or an epoch count of -1 is a typo, said at once)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v
MODELS = ("small", "resnet18", "resnet50")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=str(SAMPLE_REBEN),
                   help="folder in BigEarthNet v2.0 (reBEN) layout: metadata.parquet, BigEarthNet-S2/, "
                        "BigEarthNet-S1/ (default: the bundled 69-patch sample)")
    g.add_argument("--splits", nargs="+", default=["train"], help="splits to train on (default: train)")
    g.add_argument("--label-fraction", type=float, default=1.0,
                   help="share of the training patches whose labels are used, chosen with --seed; "
                        "the rest still feed the self-supervised terms (default: 1.0)")
    g.add_argument("--modalities", nargs="+", default=["s2", "s1"], choices=["s2", "s1"],
                   help="input streams: s2 (optical), s1 (SAR) or both (default: both)")
    g.add_argument("--unlabelled-scene", nargs=2, action="append", metavar=("S2", "S1"), default=[],
                   help="an S2 + S1 scene (each a raster or a folder of band files, bands found by name; "
                        "the baseline 04.00 offset subtracted; S1 '-' for an optical-only scene, which feeds the "
                        "optical intra-modal term only) cut into unlabelled 120x120 windows for the "
                        "self-supervised terms (repeatable)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="small", choices=MODELS,
                   help="architecture: small (ResNet-18 at width 16, trains on 2 CPU cores), resnet18, "
                        "resnet50 (GPU) (default: small)")
    g.add_argument("--init", help="start from this model file (NAME.safetensors + NAME.json), e.g. to fine-tune")
    g.add_argument("--pretrained-s2", help="ResNet state dict (safetensors or a torch weights file) for the "
                                           "optical encoder, e.g. SSL4EO-S12 weights with 12 input bands")
    g.add_argument("--pretrained-s1", help="same for the SAR encoder (2 input bands)")
    g.add_argument("--train-parts", default="all",
                   help="what trains: all, head (frozen encoders), or head+N (head and last N encoder stages)")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default="mosaic", choices=OBJECTIVES,
                   help="loss preset: mosaic (all terms), supervised (BCE only), simclr (intra-modal only), "
                        "clip (inter-modal only), contrastive (intra + inter) (default: mosaic)")
    for term, what in (("intra", "intra-modal NT-Xent"), ("inter", "inter-modal InfoNCE"),
                       ("supcon", "Jaccard-weighted multi-label SupCon"), ("bce", "BCE of the fusion head")):
        g.add_argument(f"--w-{term}", type=float, help=f"weight of the {what} term (overrides the preset)")
    g.add_argument("--tau", type=float, default=0.1, help="contrastive temperature (default: 0.1)")
    g.add_argument("--modality-dropout", type=float, default=0.2,
                   help="probability that the fusion head sees only one modality of a patch (default: 0.2)")
    g.add_argument("--no-augment", action="store_true", help="train on the patches as they are")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=30, help="passes over the data (default: 30)")
    g.add_argument("--batch-size", type=positive_int, default=16, help="global batch size over all processes (default: 16)")
    g.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 2e-3)")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: 0.05)")
    g.add_argument("--warmup-epochs", type=int, default=2, help="linear warm-up before cosine decay (default: 2)")
    g.add_argument("--seed", type=int, default=0, help="seed of init, labelled subset, order, augmentations")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/mosaic", help="run folder: checkpoint and exported model (default: runs/mosaic)")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    g.add_argument("--no-amp", action="store_true", help="no mixed precision on GPU")
    g.add_argument("--batchnorm", default="global", choices=["global", "local"],
                   help="under torchrun: global = statistics over the whole batch of all processes "
                        "(same model as one process), local = per-process statistics (default: global)")
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--eval-splits", nargs="*", default=["validation"],
                   help="splits scored after training and recorded in the model card (default: validation)")
    g.add_argument("--half", action="store_true", help="export weights as float16")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_config(a: argparse.Namespace):
    from .train.config import TrainConfig

    weights = {t: getattr(a, f"w_{t}") for t in ("intra", "inter", "supcon", "bce") if getattr(a, f"w_{t}") is not None}
    return TrainConfig(
        data=a.data, out=a.out, model=a.model, objective=a.objective, weights=weights, tau=a.tau,
        label_fraction=a.label_fraction, splits=tuple(a.splits), modalities=tuple(a.modalities),
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
        warmup_epochs=a.warmup_epochs, seed=a.seed, device=a.device, amp=not a.no_amp,
        modality_dropout=a.modality_dropout, augment=not a.no_augment, init=a.init,
        pretrained_s2=a.pretrained_s2, pretrained_s1=a.pretrained_s1, train_parts=a.train_parts,
        resume=a.resume, batchnorm=a.batchnorm, threads=a.threads, progress=not a.quiet,
    )


def cmd_train(a: argparse.Namespace) -> int:
    from . import distributed as D
    from .eval.evaluate import evaluate_model, summary_line
    from .io.model_file import save_model
    from .train.loop import train

    cfg = _train_config(a)
    dataset, scenes = None, []
    if a.unlabelled_scene:
        from .data.reben import ReBenPatches
        from .data.scene_windows import PooledPatches, SceneWindows

        parts = [ReBenPatches(cfg.data, cfg.splits, cfg.label_fraction, cfg.seed)]
        for s2, s1 in a.unlabelled_scene:
            parts.append(SceneWindows(s2, None if s1 == "-" else s1))
            w = parts[-1]
            print(f"scene {Path(s2).name}: {len(w)} windows{'' if w.has_s1 else ' (optical only)'}, "
                  f"optical {w.level or 'level unknown'}"
                  + (f", offset {w.offset:g} DN subtracted ({w.note})" if w.offset else ""))
            if w.level != "L2A":  # the labelled reBEN patches are L2A: the same warning as classify gives
                print(f"warning: the optical input of {Path(s2).name} is {w.level or 'of unknown level'}, the "
                      f"labelled patches are L2A: its windows add top-of-atmosphere (or unknown) reflectance")
        dataset = PooledPatches(parts)
        scenes = [{"optical": Path(s2).name, "sar": Path(s1).name, "windows": len(w), "level": w.level,
                   "offset": w.offset} for (s2, s1), w in zip(a.unlabelled_scene, parts[1:])]
        print(f"training pool: {len(parts[0])} reBEN patches + {len(dataset) - len(parts[0])} unlabelled scene windows")
    res = train(cfg, dataset)
    if D.rank() != 0:
        return 0
    print(f"trained {res.samples} samples in {res.seconds:.1f} s ({res.samples / max(res.seconds, 1e-9):.1f} samples/s)")
    metrics = {}
    for split in a.eval_splits:
        r = evaluate_model(res.model, cfg.data, (split,), cfg.modalities, device=str(next(res.model.parameters()).device))
        metrics[split] = r
        print(f"{split}: {summary_line(r)}")
    card = {
        "training": {
            "config": cfg.to_dict(),
            "command": " ".join(sys.argv),
            "data_name": Path(cfg.data).name,
            "unlabelled_scenes": scenes,
            "seconds": round(res.seconds, 1),
            "history": res.history,
        },
        "metrics": {s: {"metrics": {k: v for k, v in r["metrics"].items()}, "clusters": r["clusters"]}
                    for s, r in metrics.items()},
    }
    w, c = save_model(res.model.cpu(), Path(cfg.out) / "model", card, half=a.half)
    print(f"model written: {w} + {c.name}")
    return 0


def cmd_thresholds(a: argparse.Namespace) -> int:
    import numpy as np

    from .data.reben import ReBenPatches
    from .device import resolve_device
    from .eval.metrics import multilabel_metrics
    from .eval.predict import predict
    from .eval.thresholds import DEFAULT, FLOOR, choose_thresholds
    from .io.model_file import load_model, update_card

    dev = resolve_device(a.device)
    model, _ = load_model(a.model, dev)
    classes = tuple(model.cfg.classes)
    mods = a.modalities or [m for m in ("s2", "s1") if m in model.cfg.modalities]
    out = predict(model, ReBenPatches(a.data, a.splits, classes=classes), mods, 32, dev)
    values = choose_thresholds(out["labels"], out["probs"], a.min_positives)
    path = update_card(a.model, {"decision_thresholds": {
        "values": dict(zip(classes, values)), "chosen_on": {"data_name": Path(a.data).name, "splits": list(a.splits),
                                                            "modalities": mods, "patches": int(len(out["labels"]))},
        "rule": f"per class, the F1-maximising threshold (at least {FLOOR}); {DEFAULT} where the class has fewer "
                f"than {a.min_positives} positives"}})
    for name, t in (("0.5", 0.5), ("the new thresholds", np.asarray(values))):
        m = multilabel_metrics(out["labels"], out["probs"], classes, threshold=t)
        print(f"{'+'.join(a.splits)} at {name}: F1 macro {100 * m['f1_macro']:.1f}  F1 micro {100 * m['f1_micro']:.1f}"
              f"  (the patches the thresholds were chosen on: score them on another split with evaluate)")
    print(f"{sum(v != DEFAULT for v in values)} of {len(values)} classes have their own threshold; card written: {path}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .eval.evaluate import evaluate_model, summary_line
    from .io.model_file import load_model
    from .device import resolve_device

    dev = resolve_device(a.device)
    from .eval.thresholds import card_thresholds

    model, card = load_model(a.model, dev)
    mods = a.modalities or [m for m in ("s2", "s1") if m in model.cfg.modalities]
    r = evaluate_model(model, a.data, a.splits, mods, a.protocol, a.train_splits, a.label_fraction, a.seed, str(dev),
                       thresholds=card_thresholds(card, model.cfg.classes))
    r["model"] = str(a.model)
    print(summary_line(r))
    c = r["clusters"]
    if c["nmi"] is not None:
        print(f"clusters (k={c['k']}): NMI {c['nmi']:.3f}  ARI {c['ari']:.3f}  silhouette {c['silhouette']:.3f}")
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(r, indent=2))
        tmp.replace(out)
        print(f"metrics written: {out}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    from .data.bands import BEN19_CLASSES
    from .io.model_file import save_model
    from .models.mosaic import ModelConfig, MosaicModel

    run = Path(a.run)
    info = json.loads((run / "checkpoint.json").read_text())
    tc = info["config"]
    model = MosaicModel(ModelConfig.preset(tc["model"], classes=BEN19_CLASSES, modalities=tuple(tc["modalities"])))
    state = load_file(str(run / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    card = {"training": {"config": tc, "epochs_done": info["epoch"], "history": info.get("history", [])}}
    w, c = save_model(model, a.out, card, half=a.half)
    print(f"model written: {w} + {c.name}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Train the small model on the bundled real sample and print its evaluation."""
    args = ["train", "--data", str(SAMPLE_REBEN), "--epochs", str(a.epochs), "--out", a.out,
            "--eval-splits", "validation", "test", "--seed", str(a.seed)]
    print(f"MoSAiC demo: training the small S1+S2 model on the bundled BigEarthNet sample ({SAMPLE_REBEN})")
    t = time.perf_counter()
    rc = main(args)
    print(f"demo finished in {time.perf_counter() - t:.0f} s; model and checkpoint in {a.out}/")
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (pretrain, joint or fine-tune) a MoSAiC model and export it",
                       description="Train a MoSAiC model; writes OUT/checkpoint.* each epoch and OUT/model.* at the end.")
    _add_train_args(t)
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="score a model file on a folder in reBEN layout, write JSON",
                       description="Score a model file on any folder in reBEN layout.")
    e.add_argument("--model", required=True, help="model file (NAME.safetensors + NAME.json)")
    e.add_argument("--data", default=str(SAMPLE_REBEN), help="folder in reBEN layout (default: bundled sample)")
    e.add_argument("--splits", nargs="+", default=["validation"], help="splits to score (default: validation)")
    e.add_argument("--modalities", nargs="+", choices=["s2", "s1"],
                   help="inputs to use (default: all the model has); s2 alone = no SAR, s1 alone = cloudy")
    e.add_argument("--protocol", default="head", choices=["head", "linear-probe"],
                   help="head: the model's own classifier; linear-probe: logistic regressions on frozen "
                        "embeddings of the labelled training patches (default: head)")
    e.add_argument("--train-splits", nargs="+", default=["train"],
                   help="labelled patches for the probe and the class-prior baseline (default: train)")
    e.add_argument("--label-fraction", type=float, default=1.0, help="share of --train-splits labels the probe uses")
    e.add_argument("--seed", type=int, default=0, help="seed of the probe's labelled subset and K-means")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    e.add_argument("--out", help="write the metrics as JSON here")
    e.set_defaults(func=cmd_evaluate)
    h = sub.add_parser("thresholds", help="choose per-class decision thresholds on a split, store them in the card",
                       description="Per class, the probability threshold that maximises F1 on --splits (a validation "
                                   "split), written to the model card; the multi-hot output and evaluate use them.")
    h.add_argument("--model", required=True, help="model file (NAME.safetensors + NAME.json); its card is updated")
    h.add_argument("--data", default=str(SAMPLE_REBEN), help="folder in reBEN layout (default: bundled sample)")
    h.add_argument("--splits", nargs="+", default=["validation"], help="splits to choose on (default: validation)")
    h.add_argument("--modalities", nargs="+", choices=["s2", "s1"], help="inputs to use (default: all the model has)")
    h.add_argument("--min-positives", type=positive_int, default=3,
                   help="classes with fewer positives keep 0.5 (default: 3)")
    h.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    h.set_defaults(func=cmd_thresholds)
    x = sub.add_parser("export", help="turn a run's checkpoint into a model file",
                       description="Export OUT/checkpoint.* of a run as NAME.safetensors + NAME.json.")
    x.add_argument("--run", required=True, help="run folder holding checkpoint.safetensors + checkpoint.json")
    x.add_argument("--out", required=True, help="model path without extension, e.g. models/my-model")
    x.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    x.set_defaults(func=cmd_export)
    d = sub.add_parser("demo", help="train the small model on the bundled sample and print its evaluation")
    d.add_argument("--epochs", type=int, default=30, help="epochs (default: 30)")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    d.set_defaults(func=cmd_demo)
    from .batch.cli import add_many_commands
    from .engine.cli import add_commands
    from .fewshot.cli import add_command as add_finetune

    add_commands(sub)
    add_many_commands(sub)
    add_finetune(sub)
    return p


class Terminated(BaseException):
    """SIGTERM (``timeout``, a shutdown, ``kill``): unwinds like Ctrl-C, so that every job's cleanup
    runs (its temporaries deleted, no half-written output moved into place)."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup itself is not interrupted again
    raise Terminated()


def _loaded_cancelled() -> tuple[type, ...]:
    """Fine-tuning's Cancelled when fine-tuning ran: importing it for every command would load
    scikit-learn (0.6 s) before a classify's first pixel."""
    module = sys.modules.get(f"{__package__}.fewshot.finetune")
    return (module.Cancelled,) if module is not None else ()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; its errors as one line on stderr (exit 2: fix the input; 1: the system said
    no), a stop as "cancelled" (130 after Ctrl-C, 143 after SIGTERM), never a traceback for those."""
    from .engine.band_mapping import BandOrderUnknown
    from .engine.request import Cancelled as SceneCancelled

    from .io.gdal_messages import quiet_gdal_printing

    a = build_parser().parse_args(argv)
    quiet_gdal_printing()  # the error line below quotes GDAL's reason once
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return a.func(a)
    except BandOrderUnknown as e:
        print(f"error: {e.message('--optical-bands' if e.modality == 's2' else '--sar-bands')}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated, SceneCancelled, *_loaded_cancelled()) as e:
        why = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C" if isinstance(e, KeyboardInterrupt) else "cancel"
        print(f"cancelled ({why}): stopped; what it was writing was deleted, earlier files left as they were",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except OSError as e:  # the system refused: permissions, a full disk, a file gone meanwhile
        print(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 1
