"""``mosaic:finetune``: fine-tune a MoSAiC model on labelled polygons, adding new classes.

Parses parameters, converts the label features to GeoJSON dicts (``labels``), calls
``core.fewshot.finetune_from_polygons`` and returns the new model's card and report.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .. import deps
from ..inputs import layer_path
from ..labels import LABEL_FIELD, SEPARATOR, crs_string, features_to_polygons, read_scheme
from ..models import default_model_path, user_models_dir
from .base import OFFSET_HELP, OPTICAL_OFFSETS, SAR_UNITS, MosaicAlgorithm

TRAIN_PARTS = ("head", "head+1", "head+2")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FinetuneAlgorithm(MosaicAlgorithm):
    """Few-shot fine-tuning from labelled polygons."""

    LABELS = "LABELS"
    LABEL_FIELD = "LABEL_FIELD"
    SEPARATOR = "SEPARATOR"
    EPOCHS = "EPOCHS"
    TRAIN_PARTS = "TRAIN_PARTS"
    VAL_SHARE = "VAL_SHARE"
    WINDOWS = "WINDOWS_PER_POLYGON"
    UNLABELLED = "UNLABELLED"
    SEED = "SEED"
    NAME = "NAME"
    FOLDER = "FOLDER"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_IMAGE = "OUTPUT_IMAGE"
    OUTPUT_NAME = "OUTPUT_NAME"

    def name(self) -> str:
        return "finetune"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr("Fine-tune a model on labelled polygons")

    def group(self) -> str:
        return self.tr("Training")

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return "training"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(
            "Teaches a MoSAiC model from a few polygons: each polygon's label field names one or more "
            "classes (separated by ';'). Training windows of the model's size are cut under and around "
            "every polygon from the optical and SAR layers, read exactly as Classify reads them.\n\n"
            "A class the base model does not know gets a new output; the known classes keep theirs. "
            "Training uses the MoSAiC objective (contrastive terms on the labelled windows and on "
            "unlabelled windows of the same scene, supervised contrastive + BCE on the labelled ones). "
            "A share of the polygons is held out to validate these window outputs.\n\n"
            "The model also gets a pixel head: per 10 m pixel, the classes your polygons name, from the "
            "bands and the encoders' 20 m stage, trained on the pixels inside the polygons (each class and "
            "each polygon weighing the same). Classify then gives fine outputs. Its quality is measured by "
            "cross-validation over whole polygons; a class with fewer than 2 polygons is reported as too few "
            "to judge.\n\n"
            "The new model (NAME.safetensors + NAME.json, recording the base model, the classes, the "
            "hash of the labels and the validation figures) goes to the user model folder, where the "
            "MoSAiC panel lists it, with a report (loss curve, per-class AP) as PNG and HTML."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 (QGIS API)
        self._add(
            QgsProcessingParameterFile(
                self.MODEL, self.tr("Base model"), behavior=QgsProcessingParameterFile.File,
                fileFilter="MoSAiC model card (*.json)", defaultValue=default_model_path(), optional=True),
            "The MoSAiC model to start from (NAME.json next to NAME.safetensors), or a model name. "
            "Empty: the bundled model.",
        )
        self._add(QgsProcessingParameterRasterLayer(self.OPTICAL, self.tr("Optical (Sentinel-2) layer"), optional=True),
                  "Sentinel-2 raster the polygons were drawn on. Give an optical layer, a SAR layer, or both.")
        self._add(QgsProcessingParameterString(self.OPTICAL_BANDS, self.tr("Optical band names, in file order"),
                                               optional=True, defaultValue=""),
                  "Comma-separated band names in file order ('-' = ignore), or the preset S2-13. "
                  "Empty: read from the layer (descriptions, metadata, band file names).")
        self._add(QgsProcessingParameterRasterLayer(self.SAR, self.tr("SAR (Sentinel-1) layer"), optional=True),
                  "Sentinel-1 VV, VH backscatter raster of the same place.")
        self._add(QgsProcessingParameterString(self.SAR_BANDS, self.tr("SAR band names, in file order"),
                                               optional=True, defaultValue=""),
                  "e.g. VV,VH. Empty: read from the layer (descriptions, metadata, band file names).")
        self._add(QgsProcessingParameterEnum(self.SAR_UNITS, self.tr("SAR units"), options=list(SAR_UNITS),
                                             defaultValue=0),
                  "auto: detected from the values; linear power is converted to dB.", advanced=True)
        self._add(QgsProcessingParameterEnum(self.OPTICAL_OFFSET, self.tr("Optical reflectance offset"),
                                             options=[label for label, _ in OPTICAL_OFFSETS], defaultValue=0),
                  OFFSET_HELP, advanced=True)
        self._add(QgsProcessingParameterFeatureSource(self.LABELS, self.tr("Label polygons"),
                                                      [QgsProcessing.TypeVectorPolygon]),
                  "Polygons with class names: the MoSAiC label layer, or any layer of training areas. "
                  "Polygons in another CRS are reprojected.")
        self._add(QgsProcessingParameterField(self.LABEL_FIELD, self.tr("Label field"), defaultValue=LABEL_FIELD,
                                              parentLayerParameterName=self.LABELS),
                  "The field holding each polygon's class name(s).")
        self._add(QgsProcessingParameterString(self.SEPARATOR, self.tr("Label separator"), defaultValue=SEPARATOR),
                  "Separates several class names in one field value (multi-label). Empty: one name per polygon.")
        self._add(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), QgsProcessingParameterNumber.Integer,
                                               defaultValue=10, minValue=1, maxValue=1000),
                  "Passes over the training windows.")
        self._add(QgsProcessingParameterEnum(self.TRAIN_PARTS, self.tr("Parts that learn"),
                                             options=["head only", "head + last encoder stage",
                                                      "head + last two encoder stages"], defaultValue=0),
                  "head only is fastest and safest with few polygons; encoder stages adapt the features too.")
        self._add(QgsProcessingParameterNumber(self.VAL_SHARE, self.tr("Validation share of polygons"),
                                               QgsProcessingParameterNumber.Double, defaultValue=0.2,
                                               minValue=0.0, maxValue=0.8),
                  "Share of the polygons held out (whole polygons) to measure the new model.")
        self._add(QgsProcessingParameterNumber(self.WINDOWS, self.tr("Windows per polygon"),
                                               QgsProcessingParameterNumber.Integer, defaultValue=8, minValue=1,
                                               maxValue=256),
                  "Training windows cut from each polygon: one centred, the others jittered inside it.", advanced=True)
        self._add(QgsProcessingParameterNumber(self.UNLABELLED, self.tr("Unlabelled scene windows"),
                                               QgsProcessingParameterNumber.Integer, defaultValue=64, minValue=0,
                                               maxValue=4096),
                  "Unlabelled windows of the scene added for the contrastive terms (0: none).", advanced=True)
        self._add(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), QgsProcessingParameterNumber.Integer,
                                               defaultValue=0, minValue=0),
                  "Seeds window placement, the validation split and training.", advanced=True)
        self._add(QgsProcessingParameterString(self.DEVICE, self.tr("Device"), defaultValue="auto"),
                  "auto (a GPU when there is one), cpu, or cuda:N.", advanced=True)
        self._add(QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"),
                                               QgsProcessingParameterNumber.Integer, defaultValue=16, minValue=2,
                                               maxValue=4096),
                  "Windows per training step (capped at the number of windows).", advanced=True)
        self._add(QgsProcessingParameterNumber(self.THREADS, self.tr("CPU threads (0 = all)"),
                                               QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0,
                                               maxValue=1024),
                  "Threads torch may use on the CPU.", advanced=True)
        self._add(QgsProcessingParameterString(self.NAME, self.tr("New model name"), optional=True, defaultValue=""),
                  "File name of the new model (letters, digits, . _ -). Empty: BASE-ft-DATE-TIME.")
        self._add(QgsProcessingParameterFile(self.FOLDER, self.tr("Model folder"),
                                             behavior=QgsProcessingParameterFile.Folder, optional=True),
                  f"Where the new model is written. Empty: the user model folder ({user_models_dir()}).")
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_MODEL, self.tr("Fine-tuned model (card)")))
        self.addOutput(QgsProcessingOutputHtml(self.OUTPUT_REPORT, self.tr("Fine-tuning report")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_IMAGE, self.tr("Report figure")))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_NAME, self.tr("Model name")))

    # -- validation -----------------------------------------------------------------------
    def validate(self, parameters: dict[str, Any], context):
        _, _, info = self.validate_inputs(parameters, context)
        name = self.parameterAsString(parameters, self.NAME, context).strip()
        if name and not NAME_PATTERN.match(name):
            raise ValueError(f"Model name '{name}' may only hold letters, digits, '.', '_' and '-'.")
        source = self.parameterAsSource(parameters, self.LABELS, context)
        if source is None:
            raise ValueError("Choose a polygon layer with labels.")
        field = self.parameterAsString(parameters, self.LABEL_FIELD, context)
        if source.fields().indexOf(field) < 0:
            raise ValueError(f"The label layer has no field '{field}'.")
        return info

    # -- running --------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback: QgsProcessingFeedback):  # noqa: N802 (QGIS API)
        missing = deps.missing_modules()
        if missing:
            raise QgsProcessingException(deps.missing_message(missing))
        from ...core.fewshot import Cancelled, FinetuneConfig, finetune_from_polygons  # lazy: torch

        try:
            info = self.validate(parameters, context)
            optical = self.parameterAsRasterLayer(parameters, self.OPTICAL, context)
            sar = self.parameterAsRasterLayer(parameters, self.SAR, context)
            optical_path = layer_path(optical) if optical is not None else None
            sar_path = layer_path(sar) if sar is not None else None
            optical_bands, sar_bands = self.band_lists(parameters, context, optical_path, sar_path, info)
            source = self.parameterAsSource(parameters, self.LABELS, context)
            field = self.parameterAsString(parameters, self.LABEL_FIELD, context)
            separator = self.parameterAsString(parameters, self.SEPARATOR, context)
            polygons = features_to_polygons(source, field, separator, feedback)
        except ValueError as e:
            raise QgsProcessingException(str(e)) from None
        layer = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        scheme = read_scheme(layer) if layer is not None else []
        name = self.parameterAsString(parameters, self.NAME, context).strip() or \
            f"{info.name}-ft-{time.strftime('%Y%m%d-%H%M%S')}"
        folder = Path(self.parameterAsFile(parameters, self.FOLDER, context) or user_models_dir())
        folder.mkdir(parents=True, exist_ok=True)
        cfg = FinetuneConfig(
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            train_parts=TRAIN_PARTS[self.parameterAsEnum(parameters, self.TRAIN_PARTS, context)],
            val_share=self.parameterAsDouble(parameters, self.VAL_SHARE, context),
            windows_per_polygon=self.parameterAsInt(parameters, self.WINDOWS, context),
            unlabelled=self.parameterAsInt(parameters, self.UNLABELLED, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            device=self.parameterAsString(parameters, self.DEVICE, context).strip().lower() or "auto",
            threads=self.parameterAsInt(parameters, self.THREADS, context) or None,
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
        )
        feedback.pushInfo(f"Base model {info.name}; {len(polygons)} polygon(s) from field '{field}'")
        label_source = {"layer": layer.name() if layer is not None else str(parameters.get(self.LABELS)),
                        "source": layer.source() if layer is not None else "", "field": field,
                        "separator": separator}
        try:
            result = finetune_from_polygons(
                info.path, polygons, crs_string(source.sourceCrs()), optical_path, sar_path, folder / name, cfg,
                optical_bands=optical_bands, sar_bands=sar_bands,
                sar_units=SAR_UNITS[self.parameterAsEnum(parameters, self.SAR_UNITS, context)],
                optical_offset=OPTICAL_OFFSETS[self.parameterAsEnum(parameters, self.OPTICAL_OFFSET, context)][1],
                colors=dict(scheme), scheme=[n for n, _ in scheme], label_source=label_source,
                progress=lambda f: feedback.setProgress(100.0 * f), is_cancelled=feedback.isCanceled,
                log=feedback.pushInfo,
            )
        except Cancelled:
            raise QgsProcessingException(self.tr("Cancelled: no model was written.")) from None
        except (ValueError, FileNotFoundError, OSError) as e:
            raise QgsProcessingException(str(e)) from None
        for line in result.summary().splitlines():
            feedback.pushInfo(line)
        feedback.pushInfo(f"Model written: {result.card_path}")
        feedback.pushInfo(f"Report: {Path(result.report_html).as_uri()}")
        return {self.OUTPUT_MODEL: result.card_path, self.OUTPUT_REPORT: result.report_html,
                self.OUTPUT_IMAGE: result.report_png, self.OUTPUT_NAME: name}
