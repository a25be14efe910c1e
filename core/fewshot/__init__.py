"""Few-shot labelling and fine-tuning: training windows from labelled polygons, a model
extended with the analyst's classes, fine-tuned with the MoSAiC objective, and a report.

Pure Python (no qgis): the plugin converts features to GeoJSON-like dicts and calls these.
The names below load on first use: the command line builds its parser from ``cli`` for every
command, and fine-tuning's imports (scikit-learn among them) would otherwise slow a classify.
"""
from __future__ import annotations

from ..lazy import lazy_getattr

# public name -> the module that defines it
_HOME = {"LabelledPolygon": "samples", "SampleSet": "samples", "extract_samples": "samples",
         "label_hash": "samples", "parse_labels": "samples", "split_by_polygon": "samples",
         "Cancelled": "finetune", "FinetuneConfig": "finetune", "FinetuneResult": "finetune",
         "extend_model": "finetune", "finetune": "finetune",
         "class_list": "pipeline", "finetune_from_polygons": "pipeline"}
__all__ = list(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
