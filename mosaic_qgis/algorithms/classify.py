"""``mosaic:classify``: multi-label land-cover probabilities, dominant class, multi-hot and
uncertainty rasters from an optical and/or a SAR layer."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterEnum

from ..inputs import resolve_model
from ..models import read_model_info
from .base import MODES, MosaicAlgorithm

PROBABILITY_DTYPES = ("uint8", "float32")


class ClassifyAlgorithm(MosaicAlgorithm):
    """Classify a scene with a MoSAiC model."""

    PROBABILITIES = "PROBABILITIES"
    DOMINANT = "DOMINANT"
    MULTIHOT = "MULTIHOT"
    UNCERTAINTY = "UNCERTAINTY"
    FINE_CLASSES = "FINE_CLASSES"
    FINE_PROBABILITIES = "FINE_PROBABILITIES"
    FINE_UNCERTAINTY = "FINE_UNCERTAINTY"
    PROBABILITY_DTYPE = "PROBABILITY_DTYPE"

    OUTPUTS = {
        "probabilities": PROBABILITIES,
        "dominant": DOMINANT,
        "multihot": MULTIHOT,
        "uncertainty": UNCERTAINTY,
        "fine_classes": FINE_CLASSES,
        "fine_probabilities": FINE_PROBABILITIES,
        "fine_uncertainty": FINE_UNCERTAINTY,
    }
    VERB = "classify"

    def name(self) -> str:
        return "classify"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr("Classify land cover (multi-label)")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(
            "Multi-label land-cover classification of a Sentinel-2 (optical) and/or Sentinel-1 (SAR) "
            "scene with a MoSAiC model. The layers may differ in CRS and resolution: SAR is resampled "
            "onto the optical grid block by block.\n\n"
            "Window outputs (each optional; one cell per output stride, the model's answer for the 1.2 km "
            "window centred there): class probabilities (one band per class, named after it), the "
            "dominant class (coloured with the model's classes), a multi-hot bitmask (bit i set when "
            "class i is present) and the uncertainty of the prediction. Cells whose window is less than "
            "90 % inside the data are left empty.\n\n"
            "Fine outputs (per 10 m pixel) come from a model fine-tuned from polygons (Fine-tune a model on "
            "labelled polygons, or the MoSAiC panel): its pixel head's classes, their probabilities and "
            "the uncertainty (0 sure, 1 undecided) of every pixel, from the bands and the encoders' 20 m "
            "stage.\n\n"
            "Band names are read from the layers' band descriptions (B2, B02, 'B2 (blue)', VV, VH); "
            "where a file has none, list the band names in file order."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 (QGIS API)
        self.add_input_parameters()
        dtype = QgsProcessingParameterEnum(
            self.PROBABILITY_DTYPE, self.tr("Probability data type"), options=list(PROBABILITY_DTYPES), defaultValue=0
        )
        dtype.setFlags(dtype.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        dtype.setHelp(self.tr("uint8: probability x 255, four times smaller; float32: 0 to 1."))
        self.addParameter(dtype)
        self.add_output(self.PROBABILITIES, "Class probabilities", True,
                        "One band per class, band descriptions = class names.")
        self.add_output(self.DOMINANT, "Dominant class", True,
                        "Index of the most probable class, with the model's class colours.")
        self.add_output(self.MULTIHOT, "Multi-hot classes", False,
                        "Bit i set where class i's probability is at least 0.5 (value = sum of 2^i).")
        self.add_output(self.UNCERTAINTY, "Uncertainty", False,
                        "How unsure the model is per pixel (0 = certain).")
        self.add_output(self.FINE_CLASSES, "Fine classes (10 m)", False,
                        "Per-pixel class of a model fine-tuned from polygons (its pixel head), with its colours.")
        self.add_output(self.FINE_PROBABILITIES, "Fine class probabilities (10 m)", False,
                        "Per-pixel probabilities of the pixel head's classes (they sum to 1), one band per class.")
        self.add_output(self.FINE_UNCERTAINTY, "Fine uncertainty (10 m)", False,
                        "Entropy of the pixel head's probabilities over log(classes): 0 sure, 1 undecided. "
                        "Where it is high, a polygon more teaches the model most.")

    def check_extra(self, parameters: dict[str, Any], context) -> str | None:
        fine = [k for k in self.chosen_outputs(parameters) if k.startswith("fine_")]
        if not fine:
            return None
        info = read_model_info(resolve_model(self.parameterAsFile(parameters, self.MODEL, context)))
        if not info.pixel_classes:
            return (f"The model {info.name} has no pixel head, so it gives no fine (10 m) outputs: fine-tune it "
                    f"from labelled polygons first (Fine-tune a model on labelled polygons), or skip the fine "
                    f"outputs.")
        if self.parameterAsEnum(parameters, self.MODE, context) == MODES.index("sliding"):
            return "Fine outputs come from dense evaluation: set Evaluation to auto or dense."
        return None

    def request_options(self, parameters, context) -> dict[str, Any]:
        return {"probability_dtype": PROBABILITY_DTYPES[self.parameterAsEnum(parameters, self.PROBABILITY_DTYPE, context)]}
