"""``mosaic:classify``: multi-label land-cover probabilities, dominant class, multi-hot and
uncertainty rasters from an optical and/or a SAR layer."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterEnum

from .base import MosaicAlgorithm

PROBABILITY_DTYPES = ("uint8", "float32")


class ClassifyAlgorithm(MosaicAlgorithm):
    """Classify a scene with a MoSAiC model."""

    PROBABILITIES = "PROBABILITIES"
    DOMINANT = "DOMINANT"
    MULTIHOT = "MULTIHOT"
    UNCERTAINTY = "UNCERTAINTY"
    PROBABILITY_DTYPE = "PROBABILITY_DTYPE"

    OUTPUTS = {
        "probabilities": PROBABILITIES,
        "dominant": DOMINANT,
        "multihot": MULTIHOT,
        "uncertainty": UNCERTAINTY,
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
            "Outputs (each optional): class probabilities (one band per class, named after it), the "
            "dominant class (coloured with the model's classes), a multi-hot bitmask (bit i set when "
            "class i is present) and the uncertainty of the prediction.\n\n"
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

    def request_options(self, parameters, context) -> dict[str, Any]:
        return {"probability_dtype": PROBABILITY_DTYPES[self.parameterAsEnum(parameters, self.PROBABILITY_DTYPE, context)]}
