"""Few-shot labelling and fine-tuning: training windows from labelled polygons, a model
extended with the analyst's classes, fine-tuned with the MoSAiC objective, and a report.

Pure Python (no qgis): the plugin converts features to GeoJSON-like dicts and calls these.
"""
from .samples import (
    LabelledPolygon,
    SampleSet,
    extract_samples,
    label_hash,
    parse_labels,
    split_by_polygon,
)
from .finetune import Cancelled, FinetuneConfig, FinetuneResult, extend_model, finetune

__all__ = [
    "Cancelled", "FinetuneConfig", "FinetuneResult", "LabelledPolygon", "SampleSet", "extend_model",
    "extract_samples", "finetune", "label_hash", "parse_labels", "split_by_polygon",
]
from .pipeline import class_list, finetune_from_polygons  # noqa: E402

__all__ += ["class_list", "finetune_from_polygons"]
