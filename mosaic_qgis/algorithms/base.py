"""What every MoSAiC algorithm shares: tr(), createInstance(), the input parameters,
their validation, the call into ``core.engine`` and the styling of the outputs.

An algorithm only parses parameters into a ``SceneRequest``, calls ``run_scene`` and
returns paths; no maths here. torch and ``core.engine`` are imported inside
``processAlgorithm``/``checkParameterValues`` so the provider loads without them.
"""

from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QVariant
from qgis.PyQt.QtGui import QIcon

from .. import deps
from ..inputs import file_band_lists, layer_path, parse_band_list, resolve_model, unreadable_raster
from ..models import ModelInfo, default_model_path, read_model_info
from ..styling import KIND_LABELS, Classes, layer_title, new_run_group, place_in_group, save_default_style, style_layer

ICON_PATH = Path(__file__).resolve().parents[2] / "resources" / "icons" / "mosaic.svg"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
SAR_UNITS = ("auto", "db", "linear")
STAGE = ("auto", "always", "never")
# the Sentinel-2 reflectance offset (core/engine/reflectance_offset.py): choice -> DN subtracted (None: auto)
OPTICAL_OFFSETS = (("auto: from the product metadata or name", None),
                   ("none: reflectance = DN / 10000 (before baseline 04.00)", 0.0),
                   ("1000: reflectance = (DN - 1000) / 10000 (baseline 04.00 on, 2022-)", 1000.0))
OFFSET_HELP = ("Sentinel-2 products of processing baseline 04.00 and later (January 2022 on) add 1000 to every "
               "value. auto: read from the product's metadata or name; where nothing tells, none, with a warning "
               "when the values look offset.")
MODES = ("auto", "dense", "sliding")


class LayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles one output layer and moves it into its run's group when QGIS loads it.

    Processing keeps only a C++ pointer to a post-processor, so instances stay referenced
    here (bounded: a run's processors are used right after it finishes).
    """

    _alive: ClassVar[deque] = deque(maxlen=256)

    def __init__(self, kind: str, run: dict[str, Any], classes: Classes | None, k: int | None) -> None:
        super().__init__()
        self.kind, self.run, self.classes, self.k = kind, run, classes, k

    @classmethod
    def create(cls, kind: str, run: dict[str, Any], classes: Classes | None, k: int | None) -> LayerPostProcessor:
        processor = cls(kind, run, classes, k)
        cls._alive.append(processor)
        return processor

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS API)
        if not isinstance(layer, QgsRasterLayer):
            return
        style_layer(layer, self.kind, self.classes, self.k)
        layer.setName(layer_title(layer, self.kind))
        project = context.project() or QgsProject.instance()
        if self.run.get("group") is None:
            self.run["group"] = new_run_group(project, self.run["name"])
        place_in_group(project, layer, self.run["group"], self.kind)


def _skipped(value: Any) -> bool:
    """An output left out: None, '' (Processing dialogs) or a NULL QVariant (qgis_process NAME=)."""
    return value is None or value == "" or (isinstance(value, QVariant) and value.isNull())


class MosaicAlgorithm(QgsProcessingAlgorithm):
    """Base of the MoSAiC algorithms (STYLE.md section 3)."""

    OPTICAL = "OPTICAL"
    SAR = "SAR"
    OPTICAL_BANDS = "OPTICAL_BANDS"
    SAR_BANDS = "SAR_BANDS"
    SAR_UNITS = "SAR_UNITS"
    OPTICAL_OFFSET = "OPTICAL_OFFSET"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    STRIDE = "STRIDE"
    MODE = "MODE"
    DEVICE = "DEVICE"
    BATCH_SIZE = "BATCH_SIZE"
    THREADS = "THREADS"
    BLOCK_SIZE = "BLOCK_SIZE"
    STAGE = "STAGE"

    # kind (SceneRequest.outputs key) -> output parameter key, set by subclasses.
    OUTPUTS: ClassVar[dict[str, str]] = {}
    VERB = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self) -> MosaicAlgorithm:  # noqa: N802 (QGIS API)
        return type(self)()

    def group(self) -> str:
        return self.tr("Scene inference")

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return "scene"

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def helpUrl(self) -> str:  # noqa: N802 (QGIS API)
        return "https://github.com/mosaic-qgis/mosaic#readme"

    # -- parameters ---------------------------------------------------------------------
    def _add(self, param: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False) -> None:
        param.setHelp(self.tr(help_text))
        if advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)

    def add_input_parameters(self) -> None:
        self._add(
            QgsProcessingParameterRasterLayer(self.OPTICAL, self.tr("Optical (Sentinel-2) layer"), optional=True),
            "Sentinel-2 raster, reflectance x 10000, any CRS and resolution GDAL reads. "
            "Give an optical layer, a SAR layer, or both.",
        )
        self._add(
            QgsProcessingParameterString(
                self.OPTICAL_BANDS, self.tr("Optical band names, in file order"), optional=True, defaultValue=""
            ),
            "Comma-separated band names in the order of the file's bands, '-' for a band to ignore, "
            "e.g. B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,-,B11,B12 or the preset S2-13. "
            "Empty: read from the layer's band descriptions (B2, B02, 'B2 (blue)'), band metadata, wavelengths or "
            "band file names (a VRT of ..._B8A.jp2 files); a layer that names none of its bands is refused.",
        )
        self._add(
            QgsProcessingParameterRasterLayer(self.SAR, self.tr("SAR (Sentinel-1) layer"), optional=True),
            "Sentinel-1 GRD backscatter raster with VV and VH bands, in dB or linear power.",
        )
        self._add(
            QgsProcessingParameterString(
                self.SAR_BANDS, self.tr("SAR band names, in file order"), optional=True, defaultValue=""
            ),
            "Comma-separated band names in file order, e.g. VV,VH. Empty: read from the layer (descriptions, "
            "metadata, band file names).",
        )
        self._add(
            QgsProcessingParameterEnum(
                self.SAR_UNITS, self.tr("SAR units"), options=list(SAR_UNITS), defaultValue=0
            ),
            "auto: detected from the values; linear power is converted to dB exactly.",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterEnum(self.OPTICAL_OFFSET, self.tr("Optical reflectance offset"),
                                       options=[label for label, _ in OPTICAL_OFFSETS], defaultValue=0),
            OFFSET_HELP,
            advanced=True,
        )
        self._add(
            QgsProcessingParameterFile(
                self.MODEL,
                self.tr("Model"),
                behavior=QgsProcessingParameterFile.File,
                fileFilter="MoSAiC model card (*.json);;MoSAiC weights (*.safetensors)",
                defaultValue=default_model_path(),
                optional=True,
            ),
            "A MoSAiC model: NAME.json next to NAME.safetensors, or the name of a bundled model or of a "
            "model in the user model folder. Empty: the bundled model.",
        )
        self._add(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent"), optional=True),
            "Only this area is processed. Empty: the whole (overlapping) input.",
        )
        self._add(
            QgsProcessingParameterNumber(
                self.STRIDE, self.tr("Output stride (pixels, 0 = model default)"),
                type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0, maxValue=1024,
            ),
            "Distance between output pixels in input pixels; larger is faster and coarser.",
        )
        self._add(
            QgsProcessingParameterString(self.DEVICE, self.tr("Device"), defaultValue="auto"),
            "auto (a GPU when there is one), cpu, or cuda:N.",
        )
        self._add(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE, self.tr("Batch size"), type=QgsProcessingParameterNumber.Integer,
                defaultValue=64, minValue=1, maxValue=4096,  # SceneRequest.batch_size
            ),
            "Windows per forward pass; lower it if the device runs out of memory.",
        )
        self._add(
            QgsProcessingParameterEnum(self.MODE, self.tr("Evaluation"), options=list(MODES), defaultValue=0),
            "dense: fully convolutional (fast); sliding: the plain sliding-window reference; auto: dense, "
            "or sliding at strides of a whole window or more (as fast there, and exact).",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterNumber(
                self.THREADS, self.tr("CPU threads (0 = all)"), type=QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0, maxValue=1024,
            ),
            "Threads torch may use on the CPU.",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterNumber(
                self.BLOCK_SIZE, self.tr("Block size (pixels)"), type=QgsProcessingParameterNumber.Integer,
                defaultValue=2048, minValue=128, maxValue=16384,
            ),
            "Side of the blocks read and processed at once; bounds memory use. Cancel acts between blocks.",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterEnum(self.STAGE, self.tr("Decode inputs once first"), options=list(STAGE),
                                       defaultValue=0),
            "auto: JPEG 2000 inputs (Sentinel-2 band files) are decoded once into a temporary copy beside the "
            "outputs before the run, about 4x faster than decoding them block by block, and so are band files "
            "compressed in tiles of 1024 px or more, as Sentinel-2 COGs are (1.4x; the copy is compressed "
            "where the disk is short); always: any input; never: read the inputs as they are.",
            advanced=True,
        )

    def add_output(self, key: str, description: str, default: bool, help_text: str) -> None:
        param = QgsProcessingParameterRasterDestination(
            key, self.tr(description), optional=True, createByDefault=default
        )
        self._add(param, help_text)

    # -- validation -----------------------------------------------------------------------
    def canExecute(self):  # noqa: N802 (QGIS API)
        missing = deps.missing_modules()
        if missing:
            return False, deps.missing_message(missing)
        return True, ""

    def chosen_outputs(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """kind -> parameter value of the outputs asked for; an output not named at all
        (processing.run, qgis_process) is created when its parameter says createByDefault."""
        chosen = {}
        for kind, key in self.OUTPUTS.items():
            if key in parameters:
                value = parameters[key]
            else:
                value = "TEMPORARY_OUTPUT" if self.parameterDefinition(key).createByDefault() else None
            if not _skipped(value):
                chosen[kind] = value
        return chosen

    def selected_outputs(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, str]:
        """kind -> destination path. Call once per run: it registers layers to load and
        turns TEMPORARY_OUTPUT into a fresh path."""
        chosen = {}
        for kind, value in self.chosen_outputs(parameters).items():
            key = self.OUTPUTS[kind]
            if key not in parameters and context.project() is not None:
                # created by default: loaded like the named outputs where the caller loads results
                value = QgsProcessingOutputLayerDefinition(value, context.project())
            path = self.parameterAsOutputLayer({key: value}, key, context)
            if path:
                chosen[kind] = path
        return chosen

    def check_extra(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str | None:
        """Subclass hook: a message when its own parameters do not fit, else None."""
        return None

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            for name in (self.OPTICAL, self.SAR):  # QGIS says "not found" of a file that is no raster
                why = unreadable_raster(parameters.get(name))
                if why:
                    return False, why
            return ok, message
        try:
            self.validate(parameters, context)
        except ValueError as e:
            return False, str(e)
        return True, ""

    def validate_inputs(self, parameters: dict[str, Any], context: QgsProcessingContext):
        """Dependencies, layers against the model's streams, device: (optical, sar, model info).

        Needs no torch; every failure is a ValueError that says what to change."""
        missing = deps.missing_modules()
        if missing:
            raise ValueError(deps.missing_message(missing))
        optical = self.parameterAsRasterLayer(parameters, self.OPTICAL, context)
        sar = self.parameterAsRasterLayer(parameters, self.SAR, context)
        if optical is None and sar is None:
            raise ValueError("Choose an optical layer, a SAR layer, or both.")
        info = read_model_info(resolve_model(self.parameterAsFile(parameters, self.MODEL, context)))
        if optical is not None and not info.optical_bands:
            raise ValueError(f"The model {info.name} has no optical stream: leave the optical layer empty.")
        if sar is not None and not info.sar_bands:
            raise ValueError(f"The model {info.name} has no SAR stream: leave the SAR layer empty.")
        device = self.parameterAsString(parameters, self.DEVICE, context).strip().lower() or "auto"
        if not DEVICE_PATTERN.match(device):
            raise ValueError(f"Device '{device}' is not understood: use auto, cpu or cuda:N (e.g. cuda:0).")
        return optical, sar, info

    def validate(self, parameters: dict[str, Any], context: QgsProcessingContext) -> ModelInfo:
        """Every check that needs no torch first, then the engine's band guess; ValueError says what to change."""
        optical, sar, info = self.validate_inputs(parameters, context)
        optical_path = layer_path(optical) if optical is not None else None
        sar_path = layer_path(sar) if sar is not None else None
        if not self.chosen_outputs(parameters):
            names = ", ".join(f"{self.parameterDefinition(key).description()} ({key})" for key in self.OUTPUTS.values())
            first = next(iter(self.OUTPUTS.values()))
            raise ValueError(f"Choose at least one output: {names} are all set to [Skip output] (qgis_process: "
                             f"give one a file, e.g. {first}=out.tif).")
        extra = self.check_extra(parameters, context)
        if extra:
            raise ValueError(extra)
        self.band_lists(parameters, context, optical_path, sar_path, info)
        return info

    def band_lists(self, parameters, context, optical_path, sar_path, info: ModelInfo):
        """(optical, SAR) band names in file order: as typed, else as the file names them."""
        optical_bands = parse_band_list(self.parameterAsString(parameters, self.OPTICAL_BANDS, context))
        sar_bands = parse_band_list(self.parameterAsString(parameters, self.SAR_BANDS, context))
        if (optical_path and optical_bands is None) or (sar_path and sar_bands is None):
            guess_optical, guess_sar, _ = file_band_lists(optical_path, sar_path, info.path)
            optical_bands = optical_bands if optical_bands is not None else guess_optical
            sar_bands = sar_bands if sar_bands is not None else guess_sar
        return (optical_bands if optical_path else None), (sar_bands if sar_path else None)

    # -- running --------------------------------------------------------------------------
    def request_options(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """Subclass hook: extra ``SceneRequest`` fields."""
        return {}

    def processAlgorithm(self, parameters, context, feedback: QgsProcessingFeedback):  # noqa: N802 (QGIS API)
        missing = deps.missing_modules()
        if missing:
            raise QgsProcessingException(deps.missing_message(missing))
        from ...core.engine import Cancelled, SceneRequest, run_scene  # lazy: imports torch

        optical = self.parameterAsRasterLayer(parameters, self.OPTICAL, context)
        sar = self.parameterAsRasterLayer(parameters, self.SAR, context)
        try:
            info = read_model_info(resolve_model(self.parameterAsFile(parameters, self.MODEL, context)))
            optical_path = layer_path(optical) if optical is not None else None
            sar_path = layer_path(sar) if sar is not None else None
            optical_bands, sar_bands = self.band_lists(parameters, context, optical_path, sar_path, info)
        except ValueError as e:
            raise QgsProcessingException(str(e)) from None
        outputs = self.selected_outputs(parameters, context)
        extent = crs = None
        if parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            if not rect.isNull() and not rect.isEmpty():
                extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
                extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
                crs = extent_crs.authid() or extent_crs.toWkt() if extent_crs.isValid() else None
        request = SceneRequest(
            model=info.path,
            optical=optical_path,
            sar=sar_path,
            outputs=outputs,
            optical_bands=optical_bands,
            sar_bands=sar_bands,
            sar_units=SAR_UNITS[self.parameterAsEnum(parameters, self.SAR_UNITS, context)],
            optical_offset=OPTICAL_OFFSETS[self.parameterAsEnum(parameters, self.OPTICAL_OFFSET, context)][1],
            extent=extent,
            extent_crs=crs,
            mode=MODES[self.parameterAsEnum(parameters, self.MODE, context)],
            stride=self.parameterAsInt(parameters, self.STRIDE, context) or None,
            device=self.parameterAsString(parameters, self.DEVICE, context).strip().lower() or "auto",
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            threads=self.parameterAsInt(parameters, self.THREADS, context) or None,
            block_size=self.parameterAsInt(parameters, self.BLOCK_SIZE, context),
            stage=STAGE[self.parameterAsEnum(parameters, self.STAGE, context)],
            **self.request_options(parameters, context),
        )
        feedback.pushInfo(f"Model {info.name}; outputs: {', '.join(outputs)}")
        if optical_bands:
            feedback.pushInfo(f"Optical bands in file order: {','.join(optical_bands)}")
        if sar_bands:
            feedback.pushInfo(f"SAR bands in file order: {','.join(sar_bands)}")
        try:
            result = run_scene(
                request,
                progress=lambda fraction: feedback.setProgress(100.0 * fraction),
                is_cancelled=feedback.isCanceled,
            )
        except Cancelled:
            raise QgsProcessingException(self.tr("Cancelled: no output was written.")) from None
        except (ValueError, FileNotFoundError, OSError) as e:
            raise QgsProcessingException(str(e)) from None
        for warning in result.warnings:
            feedback.pushWarning(warning)
        for layer, why in result.staged.items():
            feedback.pushInfo(f"The {layer} input ({why}) was decoded once into a temporary copy before the run")
        feedback.pushInfo(
            f"{result.width} x {result.height} pixels ({result.crs}), {result.mode} evaluation, {result.seconds:.1f} s"
        )
        k = request.clusters if "clusters" in result.outputs else None
        run = {"name": self.run_name(optical, sar, info), "group": None}
        for kind, path in result.outputs.items():
            save_default_style(path, kind, info.classes_for(kind), k)
            if context.willLoadLayerOnCompletion(path):
                details = context.layerToLoadOnCompletionDetails(path)
                details.name = KIND_LABELS.get(kind, kind)
                details.setPostProcessor(LayerPostProcessor.create(kind, run, info.classes_for(kind), k))
        return {self.OUTPUTS[kind]: path for kind, path in result.outputs.items() if kind in self.OUTPUTS}

    def run_name(self, optical, sar, info: ModelInfo) -> str:
        source = (optical or sar).name()
        return f"MoSAiC {self.VERB}: {source} ({info.name}, {time.strftime('%H:%M:%S')})"
