"""`qgis_process run mosaic:classify` from the shell, with the plugin installed in a fresh profile."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal

from .conftest import S1_PATH, S2_PATH


def qgis_process_binary() -> str | None:
    # Debian's /usr/bin/qgis_process wrapper adds --noversioncheck, which qgis_process 3.22
    # rejects ("Command --noversioncheck not known!"): call the real binary when it is there.
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.fixture(scope="module")
def qgis_process_env(plugin_parent: Path, tmp_path_factory) -> dict[str, str]:
    """A throw-away QGIS profile with the plugin enabled; the venv's packages on PYTHONPATH."""
    config = tmp_path_factory.mktemp("qgis-config")
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\nmosaic=true\n")
    python_path = os.pathsep.join([*site.getsitepackages(), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    return dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(config),
        QGIS_PLUGINPATH=str(plugin_parent),
        PYTHONPATH=python_path,
    )


@pytest.mark.skipif(qgis_process_binary() is None, reason="qgis_process is not installed (apt-get install qgis)")
def test_qgis_process_runs_classify(qgis_process_env, tmp_path) -> None:
    command = [
        qgis_process_binary(), "--json", "run", "mosaic:classify", "--",
        f"OPTICAL={S2_PATH}", f"SAR={S1_PATH}", "DEVICE=cpu",
        f"DOMINANT={tmp_path / 'dominant.tif'}", f"UNCERTAINTY={tmp_path / 'uncertainty.tif'}", "PROBABILITIES=",
    ]
    done = subprocess.run(command, env=qgis_process_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["algorithm_details"]["id"] == "mosaic:classify"
    assert report["results"] == {
        "DOMINANT": str(tmp_path / "dominant.tif"), "UNCERTAINTY": str(tmp_path / "uncertainty.tif")
    }
    assert any("L1C" in w for w in report["log"]["warning"])  # the engine's warning reaches the log
    ds = gdal.Open(str(tmp_path / "dominant.tif"))
    assert ds.RasterCount == 1 and "UTM zone 30N" in ds.GetProjection()
    ds = None
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".tif", ".qml")) == [
        "dominant.qml", "dominant.tif", "uncertainty.qml", "uncertainty.tif"
    ]
    held = [int(v) for v in gdal.Open(str(tmp_path / "dominant.tif")).GetMetadataItem("values").split(",")]
    from mosaic.core.data.bands import BEN19_CLASSES
    qml = (tmp_path / "dominant.qml").read_text()
    assert held and all(BEN19_CLASSES[v] in qml for v in held)  # legend labels of the classes present


@pytest.mark.skipif(qgis_process_binary() is None, reason="qgis_process is not installed (apt-get install qgis)")
def test_qgis_process_reports_what_to_change(qgis_process_env, tmp_path) -> None:
    command = [qgis_process_binary(), "run", "mosaic:classify", "--", f"SAR={S1_PATH}", "DEVICE=gpu"]
    done = subprocess.run(command, env=qgis_process_env, capture_output=True, text=True, timeout=300, check=False)
    assert "Device 'gpu' is not understood: use auto, cpu or cuda:N" in done.stdout + done.stderr


@pytest.mark.skipif(qgis_process_binary() is None, reason="qgis_process is not installed (apt-get install qgis)")
@pytest.mark.parametrize(("alg", "outputs", "named"), [
    ("classify", ("PROBABILITIES", "DOMINANT", "MULTIHOT", "UNCERTAINTY", "FINE_CLASSES", "FINE_PROBABILITIES",
                  "FINE_UNCERTAINTY"), "Dominant class (DOMINANT)"),
    ("embed", ("EMBEDDINGS", "CLUSTERS"), "Clusters (CLUSTERS)"),
])
def test_qgis_process_with_every_output_skipped_says_so_once(qgis_process_env, alg, outputs, named) -> None:
    """NAME= hands the algorithm a NULL value: every output skipped, one message naming its own outputs."""
    command = [qgis_process_binary(), "run", f"mosaic:{alg}", "--", f"OPTICAL={S2_PATH}", *(f"{o}=" for o in outputs)]
    done = subprocess.run(command, env=qgis_process_env, capture_output=True, text=True, timeout=300, check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and text.count("Choose at least one output") == 1, text[-2000:]
    assert named in text
    others = ("EMBEDDINGS", "CLUSTERS", "embeddings") if alg == "classify" else ("DOMINANT", "PROBABILITIES")
    assert not any(f"({o})" in text or f"{o}," in text for o in others)
