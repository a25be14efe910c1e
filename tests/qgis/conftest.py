"""Fixtures for the QGIS tests: the plugin loaded as QGIS loads it, the real sample layers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample" / "spain"
S2_PATH = SAMPLE / "Spain_7370579_S2Hand.tif"
S1_PATH = SAMPLE / "Spain_7370579_S1Hand.tif"
S2_BANDS_13 = "B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,-,B11,B12"


@pytest.fixture(scope="module")
def mosaic_plugin(qgis_iface, qgis_processing) -> Iterator[object]:
    """The plugin as the desktop starts it (classFactory, initGui); unloaded after the module."""
    import mosaic

    plugin = mosaic.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()
    assert QgsApplication.processingRegistry().providerById("mosaic") is None


@pytest.fixture
def project(qgis_new_project) -> Iterator[QgsProject]:
    """An empty project; emptied again afterwards (QGIS crashes at exit with live layers)."""
    yield qgis_new_project
    qgis_new_project.removeAllMapLayers()
    qgis_new_project.layerTreeRoot().removeAllChildren()


@pytest.fixture
def sample_layers(project: QgsProject) -> Iterator[tuple[QgsRasterLayer, QgsRasterLayer]]:
    """The real Spain Sentinel-2 and Sentinel-1 layers, added to the project."""
    if not S2_PATH.is_file() or not S1_PATH.is_file():
        pytest.fail(f"sample scene missing under {SAMPLE}")
    s2 = QgsRasterLayer(str(S2_PATH), "Spain S2", "gdal")
    s1 = QgsRasterLayer(str(S1_PATH), "Spain S1", "gdal")
    assert s2.isValid() and s1.isValid()
    project.addMapLayers([s2, s1])
    yield s2, s1
