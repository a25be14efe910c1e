"""mosaic:classify as a step of a graphical-modeler model, and repeated as batch mode does.

The modeler wires a model input to the algorithm's parameter and the algorithm's output to a
model output; this is the path a user's .model3 file takes, with no dialog involved.
"""
from __future__ import annotations

from pathlib import Path

import processing
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
)


def _model() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("classify optical", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("s2", "Optical"), QgsProcessingModelParameter("s2"))
    child = QgsProcessingModelChildAlgorithm("mosaic:classify")
    child.setChildId("classify")
    child.addParameterSources("OPTICAL", [QgsProcessingModelChildParameterSource.fromModelParameter("s2")])
    child.addParameterSources("OPTICAL_BANDS", [QgsProcessingModelChildParameterSource.fromStaticValue("S2-13")])
    child.addParameterSources("PROBABILITIES", [QgsProcessingModelChildParameterSource.fromStaticValue(None)])
    # the modeler dialog fills every other parameter with its default, as a static value
    alg = QgsApplication.processingRegistry().algorithmById("mosaic:classify")
    for param in alg.parameterDefinitions():
        if param.name() not in child.parameterSources() and not param.isDestination():
            child.addParameterSources(param.name(), [QgsProcessingModelChildParameterSource.fromStaticValue(param.defaultValue())])
    out = QgsProcessingModelOutput("dominant", "Dominant class")
    out.setChildOutputName("DOMINANT")
    out.setChildId("classify")
    child.setModelOutputs({"dominant": out})
    model.addChildAlgorithm(child)
    return model


def test_classify_runs_inside_a_model(mosaic_plugin, sample_layers, tmp_path) -> None:
    s2, _ = sample_layers
    model = _model()
    ok, errors = model.validate()
    assert ok, errors
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    dominant = str(tmp_path / "model-dominant.tif")
    # the model's own name for the output: "classify:dominant" in QGIS 3.22, "dominant_class" in 3.40
    (name,) = [p.name() for p in model.destinationParameterDefinitions()]
    assert "dominant" in name
    results = processing.run(model, {"s2": s2, name: dominant}, context=context, feedback=feedback)
    assert Path(results[name]).is_file()
    layer = QgsRasterLayer(results[name], "d")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32630"
    del layer


def test_batch_of_runs_writes_one_output_each(mosaic_plugin, sample_layers, tmp_path) -> None:
    """Batch mode runs the algorithm once per row with its own outputs: no state leaks between runs."""
    s2, s1 = sample_layers
    rows = [{"OPTICAL": s2, "OPTICAL_BANDS": "S2-13"}, {"SAR": s1}]
    written = []
    for i, row in enumerate(rows):
        out = str(tmp_path / f"batch-{i}.tif")
        res = processing.run("mosaic:classify", {**row, "DOMINANT": out, "PROBABILITIES": None})
        written.append(res["DOMINANT"])
    assert written == [str(tmp_path / "batch-0.tif"), str(tmp_path / "batch-1.tif")]
    assert all(Path(p).is_file() for p in written)
