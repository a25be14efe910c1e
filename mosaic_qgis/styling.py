"""Renderers for MoSAiC output rasters and the one layer-tree group per run.

- dominant class, fine classes: paletted renderer with the class names and colours (the legend
  lists the classes the raster holds);
- probabilities, fine probabilities: one band per class named after it; shown as a colour ramp
  (0 to 100 %) of the class with the highest mean probability, whose name the layer carries
  (``layer_title``: "Class probabilities: Arable land"); another class is another band in the
  layer's symbology;
- multi-hot: paletted over the class combinations present, labelled with their class names
  (bit i = class i), or a ramp when there are too many combinations;
- uncertainty: a pseudocolour ramp over the mean binary entropy, 0 (certain) to 1 bit; fine
  uncertainty: the same ramp over the normalised entropy of the pixel head;
- embeddings: the first three dimensions as RGB, stretched;
- clusters: paletted, a distinct qualitative colour per cluster.

Everything here runs in the main thread except ``save_default_style``, which only builds
a layer that is never added to a project (safe in a Processing worker thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsLayerTree,
    QgsLayerTreeGroup,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.engine.palette import cluster_colors as palette_colors

# Output kinds in layer-tree order (top first) and their layer names.
KIND_ORDER: tuple[str, ...] = ("fine_classes", "dominant", "fine_probabilities", "probabilities", "multihot",
                               "fine_uncertainty", "uncertainty", "clusters", "embeddings")
KIND_LABELS: dict[str, str] = {
    "fine_classes": "Fine classes (10 m)",
    "fine_probabilities": "Fine class probabilities (10 m)",
    "fine_uncertainty": "Fine uncertainty (10 m)",
    "dominant": "Dominant class",
    "probabilities": "Class probabilities",
    "multihot": "Multi-hot classes",
    "uncertainty": "Uncertainty",
    "clusters": "Embedding clusters",
    "embeddings": "Embeddings",
}

Classes = Sequence[tuple[str, str]]  # (name, "#rrggbb") in class-index order


def cluster_colors(k: int) -> list[QColor]:
    """``k`` distinct colours: the engine's palette, the one in the files' colour tables."""
    return [QColor(c) for c in palette_colors(k)]


def _band_range(layer: QgsRasterLayer, band: int) -> tuple[float, float]:
    # every statistic: the form QGIS 3.40 does not call deprecated (its flags argument is) and 3.22 has
    stats = layer.dataProvider().bandStatistics(band)
    lo, hi = stats.minimumValue, stats.maximumValue
    if not (hi > lo):  # constant or empty band
        hi = lo + 1.0
    return lo, hi


def _probability_range(layer: QgsRasterLayer) -> tuple[float, float]:
    """Probabilities are 0..1 (floats) or scaled to the integer type's range."""
    dtype = layer.dataProvider().dataType(1)
    if dtype == Qgis.Byte:  # no scale applied: the engine stores p x 250 (255 = nodata)
        return 0.0, 250.0
    if dtype == Qgis.UInt16:
        return 0.0, 65535.0
    return 0.0, 1.0


def true_colour_renderer(layer: QgsRasterLayer, bands: tuple[int, int, int] = (4, 3, 2), lo: float = 300,
                         hi: float = 2500) -> QgsMultiBandColorRenderer:
    """RGB of three bands, each stretched lo..hi: Sentinel-2 reflectance x 10000 (B4, B3, B2 of a
    13-band stack) as the eye expects it, the backdrop of the demo's maps and screenshots."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for setter, band in zip(setters, bands):
        enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(lo)
        enhancement.setMaximumValue(hi)
        setter(enhancement)
    return renderer


def paletted_renderer(layer: QgsRasterLayer, entries: Iterable[tuple[int, QColor, str]]) -> QgsPalettedRasterRenderer:
    classes = [QgsPalettedRasterRenderer.Class(value, color, label) for value, color, label in entries]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def _ramp_renderer(layer: QgsRasterLayer, ramp_name: str, lo: float, hi: float) -> QgsSingleBandPseudoColorRenderer:
    ramp = QgsStyle.defaultStyle().colorRamp(ramp_name)
    shader_fn = QgsColorRampShader(lo, hi, ramp, QgsColorRampShader.Interpolated)
    shader_fn.classifyColorRamp(5, -1)
    shader = QgsRasterShader(lo, hi)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    return renderer


def most_likely_band(layer: QgsRasterLayer) -> int:
    """The band (class) with the highest mean probability, from the ``class_means`` tag the
    engine writes (core/engine/writer.py): the class a first look at the map should show.
    Band 1 for a file without the tag."""
    ds = gdal.Open(layer.source())
    tag = ds.GetMetadataItem("class_means") if ds is not None else None
    ds = None
    means = [float(v) for v in tag.split(",")] if tag else []
    return 1 + max(range(len(means)), key=lambda i: means[i]) if len(means) == layer.bandCount() else 1


def _probability_renderer(layer: QgsRasterLayer, band: int) -> QgsSingleBandPseudoColorRenderer:
    """One class's probability as a Viridis ramp, legend 0 % .. 100 %."""
    lo, hi = _probability_range(layer)
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    shader_fn = QgsColorRampShader(lo, hi, ramp, QgsColorRampShader.Interpolated)
    shader_fn.setColorRampItemList([QgsColorRampShader.ColorRampItem(lo + (hi - lo) * q, ramp.color(q), f"{q:.0%}")
                                    for q in (0.0, 0.25, 0.5, 0.75, 1.0)])
    legend = QgsColorRampLegendNodeSettings()  # the continuous legend's ends, as probabilities
    legend.setMinimumLabel("0 %")
    legend.setMaximumLabel("100 %")
    shader_fn.setLegendSettings(legend)
    shader = QgsRasterShader(lo, hi)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    return renderer


def layer_title(layer: QgsRasterLayer, kind: str) -> str:
    """The name an output layer gets: its kind, and for probabilities the class its renderer shows."""
    title = KIND_LABELS.get(kind, kind)
    if kind in ("probabilities", "fine_probabilities") and layer.renderer() is not None:
        bands = layer.renderer().usesBands()
        ds = gdal.Open(layer.source())
        name = ds.GetRasterBand(bands[0]).GetDescription() if ds is not None and bands else ""
        ds = None
        if name:
            title = f"{title}: {name}"
    return title


def multihot_label(value: int, classes: Classes | None) -> str:
    """``5`` -> ``"Urban fabric + Arable land"`` (bit i = class i); 0 -> ``"no class"``."""
    if value == 0:
        return "no class"
    names = [name for i, (name, _) in enumerate(classes or ()) if value >> i & 1]
    unknown = value >> len(classes or ()) if classes else value
    if not classes or unknown:
        return f"bits {value:b}"
    return " + ".join(names)


def values_present(path: str) -> list[int] | None:
    """The values a categorical output holds, from the ``values`` tag the engine writes
    (core/engine/writer.py); None when the file has none (too many values, or not ours)."""
    ds = gdal.Open(path)
    tag = ds.GetMetadataItem("values") if ds is not None else None
    ds = None
    if tag is None:
        return None
    return [int(v) for v in tag.split(",") if v]


def _multihot_renderer(layer: QgsRasterLayer, classes: Classes | None, max_combinations: int = 64):
    """Paletted over the class combinations present (legend lists them), else a ramp. The
    combinations come from the file's tag: QGIS's own scan (``classDataFromRaster``) builds
    a histogram over the whole value range, 2**19 bins for 19 classes, and saves it beside
    the file."""
    values = values_present(layer.source())
    if not values or len(values) > max_combinations:
        return _ramp_renderer(layer, "Spectral", *_band_range(layer, 1))
    colors = cluster_colors(len(values))
    return paletted_renderer(layer, ((v, c, multihot_label(v, classes)) for v, c in zip(values, colors)))


def style_layer(layer: QgsRasterLayer, kind: str, classes: Classes | None = None, k: int | None = None) -> None:
    """Give an output layer its renderer.

    Args:
        layer: a valid raster written by the engine.
        kind: one of ``KIND_ORDER``.
        classes: the model's (name, colour) pairs, for ``dominant`` (and probability band names).
        k: number of clusters, for ``clusters`` (else taken from the band's maximum).
    """
    provider = layer.dataProvider()
    if kind in ("dominant", "fine_classes"):
        if not classes:
            raise ValueError(f"the {kind} style needs the model's classes")
        # the legend lists the classes the raster holds (its ``values`` tag), all of them without one
        present = values_present(layer.source())
        renderer = paletted_renderer(layer, ((i, QColor(color), name) for i, (name, color) in enumerate(classes)
                                             if present is None or i in present))
    elif kind == "clusters":
        if k is None:
            k = int(_band_range(layer, 1)[1]) + 1
        renderer = paletted_renderer(layer, ((i, c, f"Cluster {i}") for i, c in enumerate(cluster_colors(k))))
    elif kind in ("probabilities", "fine_probabilities"):
        renderer = _probability_renderer(layer, most_likely_band(layer))
    elif kind == "uncertainty":
        renderer = _ramp_renderer(layer, "Magma", 0.0, 1.0)  # mean binary entropy, bits
    elif kind == "fine_uncertainty":  # normalised entropy: 0..1, or x 250 in a byte raster
        renderer = _ramp_renderer(layer, "Magma", 0.0, 250.0 if provider.dataType(1) == Qgis.Byte else 1.0)
    elif kind == "multihot":
        renderer = _multihot_renderer(layer, classes)
    elif kind == "embeddings":
        bands = [1, 2, 3] if layer.bandCount() >= 3 else [1, 1, 1]
        renderer = QgsMultiBandColorRenderer(provider, *bands)
        for setter, band in zip(
            (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement, renderer.setBlueContrastEnhancement),
            bands,
        ):
            enhancement = QgsContrastEnhancement(provider.dataType(band))
            enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
            lo, hi = _band_range(layer, band)
            enhancement.setMinimumValue(lo)
            enhancement.setMaximumValue(hi)
            setter(enhancement)
    else:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(KIND_ORDER)}")
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def save_default_style(path: str, kind: str, classes: Classes | None = None, k: int | None = None) -> str | None:
    """Write ``<raster>.qml`` next to an output so QGIS styles it whenever it is opened.

    Returns the QML path, or None when the raster cannot be opened.
    """
    layer = QgsRasterLayer(path, Path(path).stem, "gdal")
    if not layer.isValid():
        return None
    style_layer(layer, kind, classes, k)
    qml = str(Path(path).with_suffix(".qml"))
    message, ok = layer.saveNamedStyle(qml)
    del layer
    return qml if ok else None


def new_run_group(project: QgsProject, name: str) -> QgsLayerTreeGroup:
    """A new group for one run (a run never reuses another's group), at the top of the layer tree
    but below the vector layers there: the polygons being labelled stay drawn over the maps."""
    root = project.layerTreeRoot()
    position = 0
    for child in root.children():
        if not (QgsLayerTree.isLayer(child) and isinstance(child.layer(), QgsVectorLayer)):
            break
        position += 1
    return root.insertGroup(position, name)


def place_in_group(project: QgsProject, layer: QgsRasterLayer, group: QgsLayerTreeGroup, kind: str) -> None:
    """Move ``layer`` (in ``project``, in the tree or not) into ``group``, ordered by ``KIND_ORDER``."""
    node = project.layerTreeRoot().findLayer(layer.id())
    if node is not None and node.parent() is group:
        return
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    position = 0
    for child in group.children():
        child_kind = child.customProperty("mosaic/kind")
        if (KIND_ORDER.index(child_kind) if child_kind in KIND_ORDER else len(KIND_ORDER)) <= rank:
            position += 1
    new_node = group.insertLayer(position, layer)
    new_node.setCustomProperty("mosaic/kind", kind)
    if kind in ("probabilities", "embeddings", "multihot"):
        new_node.setExpanded(False)
    if node is not None:
        node.parent().removeChildNode(node)


def add_output_layers(
    project: QgsProject,
    outputs: dict[str, str],
    group_name: str,
    classes: Classes | None = None,
    k: int | None = None,
    fine_classes: Classes | None = None,
) -> list[QgsRasterLayer]:
    """Load engine outputs (kind -> path) as styled layers in a new group; main thread only.
    ``fine_classes``: the pixel head's classes, for the fine outputs."""
    layers = []
    group = new_run_group(project, group_name)
    for kind in sorted(outputs, key=lambda kd: KIND_ORDER.index(kd) if kd in KIND_ORDER else len(KIND_ORDER)):
        layer = QgsRasterLayer(outputs[kind], KIND_LABELS.get(kind, kind), "gdal")
        if not layer.isValid():
            raise ValueError(f"the {kind} output {outputs[kind]} could not be opened")
        style_layer(layer, kind, fine_classes if kind.startswith("fine_") else classes, k)
        layer.setName(layer_title(layer, kind))
        project.addMapLayer(layer, False)
        place_in_group(project, layer, group, kind)
        layers.append(layer)
    return layers
