"""The report of a fine-tuning run: a PNG (loss curve, the pixel map's cross-validated F1 per
class, the window head's held-out AP per class) and an HTML page beside the model, so an analyst
sees what the run learnt, and how sure that figure is, before trusting the map.

Figures are shown only where they can mean something: a class with fewer than two polygons
held out says "too few to judge" instead of a number.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _short(c: str) -> str:
    return c if len(c) < 32 else c[:30] + "…"


def write_report(res: Any, stem: Path) -> tuple[Path, Path]:
    """Writes ``STEM.report.png`` and ``STEM.report.html`` for a ``FinetuneResult``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a worker thread

    png = stem.parent / f"{stem.name}.report.png"
    page = stem.parent / f"{stem.name}.report.html"
    colors = {c["name"]: c.get("color", "#808080") for c in res.card.get("classes", [])}
    fig = Figure(figsize=(15, 4.4), dpi=100)
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.2, 1.2]})
    _loss_panel(ax1, res.steps)
    _bars(ax2, (res.pixel_validation or {}).get("per_class", {}), "f1", colors,
          _pixel_title(res.pixel_validation), "F1 on held-out polygons (pixels)")
    _bars(ax3, (res.validation or {}).get("per_class_judged", {}), None, colors,
          "Window outputs: AP on held-out polygons", "AP (windows)",
          values=(res.validation or {}).get("per_class_ap", {}))
    fig.tight_layout()
    fig.savefig(png)
    page.write_text(_page(res, stem.name, png.name, colors), encoding="utf-8")
    return png, page


def _loss_panel(ax, steps: list[dict[str, float]]) -> None:
    if steps:
        x = [s["step"] for s in steps]
        for key, style in (("total", "-"), ("intra", ":"), ("inter", ":"), ("supcon", "--"), ("bce", "-.")):
            y = [s.get(key, np.nan) for s in steps]
            if np.nanmax(np.abs(y)) > 0:
                ax.plot(x, y, style, label=key, lw=1.5 if key == "total" else 1)
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Window head: training loss (MoSAiC objective)", fontsize=10)


def _pixel_title(pv: dict[str, Any] | None) -> str:
    if not pv:
        return "Fine map: no cross-validation"
    return (f"Fine map: {pv['folds']}-fold CV over {pv['polygons']} polygons\n"
            f"accuracy {_fmt(pv['accuracy'])} %, macro F1 {_fmt(pv['f1_macro'])} %")


def _bars(ax, per_class: dict[str, dict], key: str | None, colors: dict[str, str], title: str, xlabel: str,
          values: dict[str, float | None] | None = None) -> None:
    """Horizontal bars per class; classes too few to judge get a note instead of a bar."""
    names = list(per_class)
    if not names:
        ax.text(0.5, 0.5, "nothing held out\n(too few polygons per class)", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
        return
    y = np.arange(len(names))
    for i, c in enumerate(names):
        v = per_class[c]
        value = v.get(key) if key else (values or {}).get(c)
        if v.get("judged") and value is not None:
            ax.barh(i, value, 0.6, color=colors.get(c, "#808080"), edgecolor="black")
            ax.text(min(value, 0.98), i, f" {100 * value:.0f}", va="center", ha="right" if value > 0.2 else "left",
                    fontsize=8)
        else:
            ax.text(0.01, i, v.get("why", "too few to judge"), va="center", fontsize=7, color="dimgray")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{_short(c)} ({per_class[c]['polygons']})" for c in names], fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel + "; (n) = polygons held out", fontsize=8)
    ax.set_title(title, fontsize=10)


def _page(res: Any, name: str, png: str, colors: dict[str, str]) -> str:
    tr = res.card.get("training", {})
    labels = tr.get("labels", {})
    counts = tr.get("samples", {}).get("counts", {})
    pv = res.pixel_validation or {}
    pixel_rows = []
    for c, v in pv.get("per_class", {}).items():
        figures = (f"<td>{_fmt(v['precision'])}</td><td>{_fmt(v['recall'])}</td><td>{_fmt(v['f1'])}</td>"
                   if v["judged"] else f"<td colspan=3>{html.escape(v['why'])}</td>")
        pixel_rows.append(f"<tr><td>{_swatch(colors.get(c))} {html.escape(c)}{' (new)' if c in res.new_classes else ''}"
                          f"</td><td>{v['polygons']}</td><td>{v['pixels']}</td>{figures}</tr>")
    v = res.validation or {}
    b = res.base_validation or {}
    window_rows = []
    per_train = tr.get("samples", {}).get("per_class_train", {})
    for c, j in v.get("per_class_judged", {}).items():
        figures = (f"<td>{_fmt((b.get('per_class_ap') or {}).get(c))}</td><td>{_fmt(v['per_class_ap'].get(c))}</td>"
                   if j["judged"] else f"<td colspan=2>{html.escape(j['why'])}</td>")
        window_rows.append(f"<tr><td>{_swatch(colors.get(c))} {html.escape(c)}</td><td>{per_train.get(c, 0)}</td>"
                           f"<td>{j['polygons']}</td><td>{j['windows']}</td>{figures}</tr>")
    timings = tr.get("timings_s", {})
    from .finetune import window_summary

    return f"""<!doctype html><html><head><meta charset="utf-8"><title>MoSAiC fine-tuning: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:1em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}}</style></head><body>
<h1>Fine-tuning report: {html.escape(name)}</h1>
<p>Base model <b>{html.escape(str(tr.get('base_model', {}).get('name')))}</b>; new classes: {html.escape(', '.join(res.new_classes) or 'none')};
parts trained: {html.escape(str(tr.get('config', {}).get('train_parts')))}; {tr.get('config', {}).get('epochs')} epochs; {res.seconds:.1f} s
({', '.join(f'{html.escape(k)} {t:.1f} s' for k, t in timings.items() if k != 'total')}).</p>
<p>Labels: {html.escape(str(labels.get('layer', '')))} (sha256 {html.escape(str(labels.get('hash', ''))[:16])}…), {labels.get('polygons', '?')} polygons.</p>
<img src="{html.escape(png)}" style="max-width:100%">
<h2>Fine map (per pixel)</h2>
<p>Classes: {html.escape(', '.join(res.pixel_classes))}. Measured by {pv.get('folds', '?')}-fold cross-validation over whole polygons:
each polygon's pixels were classified by a pixel head trained without that polygon. Accuracy {_fmt(pv.get('accuracy'))} %,
macro F1 {_fmt(pv.get('f1_macro'))} % over {html.escape(', '.join(pv.get('f1_macro_over', [])) or 'no class')}.
A class with fewer than 2 polygons cannot be judged this way.</p>
<table><tr><th>class</th><th>polygons</th><th>pixels</th><th>precision</th><th>recall</th><th>F1</th></tr>{''.join(pixel_rows)}</table>
<h2>Window outputs (1.2 km windows)</h2>
<p>{html.escape(window_summary(res.validation))}. {counts.get('windows', '?')} windows from the polygons
({counts.get('skipped_nodata', 0)} mostly no-data skipped); {tr.get('samples', {}).get('train_windows')} training,
{tr.get('samples', {}).get('validation_windows')} held-out, {tr.get('samples', {}).get('unlabelled_windows')} unlabelled windows.</p>
<table><tr><th>class</th><th>training windows</th><th>held-out polygons</th><th>held-out windows</th><th>AP base model</th><th>AP fine-tuned</th></tr>{''.join(window_rows)}</table>
</body></html>
"""


def _swatch(color: str | None) -> str:
    return f"<span style='background:{html.escape(color or '#808080')}'>&nbsp;&nbsp;&nbsp;</span>"
