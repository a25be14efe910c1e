"""``mosaic:embed``: per-pixel MoSAiC embeddings and their K-means clusters."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterNumber

from .base import MosaicAlgorithm


class EmbedAlgorithm(MosaicAlgorithm):
    """Embed a scene and cluster the embeddings."""

    EMBEDDINGS = "EMBEDDINGS"
    CLUSTERS = "CLUSTERS"
    CLUSTER_COUNT = "CLUSTER_COUNT"
    CLUSTER_SAMPLE = "CLUSTER_SAMPLE"
    SEED = "SEED"

    OUTPUTS = {"embeddings": EMBEDDINGS, "clusters": CLUSTERS}
    VERB = "embed"

    def name(self) -> str:
        return "embed"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr("Embeddings and clusters")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(
            "Runs the MoSAiC encoders over an optical and/or SAR scene and writes the fused embedding "
            "of every output pixel (one band per dimension) and a K-means clustering of them: "
            "unsupervised map units that follow what the model learned, useful to find where labels "
            "are needed. K-means is fitted on a random sample of pixels and applied to all of them."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 (QGIS API)
        self.add_input_parameters()
        self._add(
            QgsProcessingParameterNumber(
                self.CLUSTER_COUNT, self.tr("Number of clusters (k)"), type=QgsProcessingParameterNumber.Integer,
                defaultValue=8, minValue=2, maxValue=256,
            ),
            "K of K-means.",
        )
        self._add(
            QgsProcessingParameterNumber(
                self.CLUSTER_SAMPLE, self.tr("Pixels sampled to fit K-means"),
                type=QgsProcessingParameterNumber.Integer, defaultValue=20000, minValue=100, maxValue=10_000_000,
            ),
            "More is steadier and slower.",
        )
        seed = QgsProcessingParameterNumber(
            self.SEED, self.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0
        )
        seed.setFlags(seed.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        seed.setHelp(self.tr("Same seed, same clusters."))
        self.addParameter(seed)
        self.add_output(self.EMBEDDINGS, "Embeddings", True, "One band per embedding dimension (float32).")
        self.add_output(self.CLUSTERS, "Clusters", True, "K-means cluster of every pixel, distinct colours.")

    def check_extra(self, parameters, context) -> str | None:
        k = self.parameterAsInt(parameters, self.CLUSTER_COUNT, context)
        sample = self.parameterAsInt(parameters, self.CLUSTER_SAMPLE, context)
        if "clusters" in self.chosen_outputs(parameters) and sample < k:
            return f"The K-means sample ({sample} pixels) is smaller than the number of clusters ({k}): raise the sample."
        return None

    def request_options(self, parameters, context) -> dict[str, Any]:
        return {
            "clusters": self.parameterAsInt(parameters, self.CLUSTER_COUNT, context),
            "cluster_sample": self.parameterAsInt(parameters, self.CLUSTER_SAMPLE, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
        }
