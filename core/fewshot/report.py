"""The report of a fine-tuning run: a PNG (loss curve, per-class validation AP) and a small
HTML page beside the model, so an analyst sees what the run learnt before trusting it."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def write_report(res: Any, stem: Path) -> tuple[Path, Path]:
    """Writes ``STEM.report.png`` and ``STEM.report.html`` for a ``FinetuneResult``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a worker thread

    png = stem.parent / f"{stem.name}.report.png"
    page = stem.parent / f"{stem.name}.report.html"
    fig = Figure(figsize=(11, 4.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    if res.steps:
        x = [s["step"] for s in res.steps]
        for key, style in (("total", "-"), ("intra", ":"), ("inter", ":"), ("supcon", "--"), ("bce", "-.")):
            y = [s.get(key, np.nan) for s in res.steps]
            if np.nanmax(np.abs(y)) > 0:
                ax1.plot(x, y, style, label=key, lw=1.5 if key == "total" else 1)
        ax1.legend(fontsize=8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.set_title("Training loss (MoSAiC objective)")
    classes = list(res.classes)
    colors = {c["name"]: c.get("color", "#808080") for c in res.card.get("classes", [])}
    val = (res.validation or {}).get("per_class_ap", {})
    base = (res.base_validation or {}).get("per_class_ap", {})
    shown = [c for c in classes if val.get(c) is not None]
    if shown:
        y = np.arange(len(shown))
        ax2.barh(y + 0.2, [val[c] for c in shown], 0.4, color=[colors.get(c, "#808080") for c in shown],
                 edgecolor="black", label="fine-tuned")
        ax2.barh(y - 0.2, [base.get(c) or 0 for c in shown], 0.4, color="lightgrey", edgecolor="grey",
                 label="base model (known classes)")
        ax2.set_yticks(y)
        ax2.set_yticklabels([c if len(c) < 32 else c[:30] + "…" for c in shown], fontsize=8)
        ax2.set_xlim(0, 1)
        ax2.legend(fontsize=8, loc="lower right")
        ax2.set_title(f"Validation AP per class ({res.validation['n_samples']} windows)")
    else:
        ax2.text(0.5, 0.5, "no validation windows\n(too few polygons to hold some out)", ha="center", va="center")
        ax2.set_axis_off()
    fig.tight_layout()
    fig.savefig(png)
    tr = res.card.get("training", {})
    rows = []
    per_class = tr.get("samples", {}).get("per_class_train", {})
    for c in classes:
        if per_class.get(c) or val.get(c) is not None or c in res.new_classes:
            rows.append(
                f"<tr><td><span style='background:{html.escape(colors.get(c, '#808080'))}'>&nbsp;&nbsp;&nbsp;</span> "
                f"{html.escape(c)}{' (new)' if c in res.new_classes else ''}</td><td>{per_class.get(c, 0)}</td>"
                f"<td>{_fmt(base.get(c))}</td><td>{_fmt(val.get(c))}</td></tr>")
    v, b = res.validation or {}, res.base_validation or {}
    labels = tr.get("labels", {})
    counts = tr.get("samples", {}).get("counts", {})
    page.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>MoSAiC fine-tuning: {html.escape(stem.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>Fine-tuning report: {html.escape(stem.name)}</h1>
<p>Base model <b>{html.escape(str(tr.get('base_model', {}).get('name')))}</b>; new classes: {html.escape(', '.join(res.new_classes) or 'none')};
parts trained: {html.escape(str(tr.get('config', {}).get('train_parts')))}; {tr.get('config', {}).get('epochs')} epochs; {res.seconds:.1f} s.</p>
<p>Labels: {html.escape(str(labels.get('layer', '')))} (sha256 {html.escape(str(labels.get('hash', ''))[:16])}…);
{counts.get('polygons', '?')} polygons, {counts.get('windows', '?')} windows
({counts.get('skipped_outside', 0)} skipped outside the rasters, {counts.get('skipped_nodata', 0)} mostly no-data);
{tr.get('samples', {}).get('train_windows')} training, {tr.get('samples', {}).get('validation_windows')} validation windows
(held out by polygon), {tr.get('samples', {}).get('unlabelled_windows')} unlabelled scene windows.</p>
<p>Validation AP macro {_fmt(v.get('ap_macro'))} / micro {_fmt(v.get('ap_micro'))} (fine-tuned);
base model on its known classes: macro {_fmt(b.get('ap_macro'))} / micro {_fmt(b.get('ap_micro'))}.
Few validation windows make these figures noisy.</p>
<img src="{html.escape(png.name)}" style="max-width:100%">
<table><tr><th>class</th><th>training windows</th><th>val AP base</th><th>val AP fine-tuned</th></tr>{''.join(rows)}</table>
</body></html>
""", encoding="utf-8")
    return png, page
