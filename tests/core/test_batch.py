"""Many scenes on a Dask cluster (core/batch): the same outputs as single runs, failures
reported per scene, a killed job resumed, the scene lists, the manifest, mosaics and STAC.

Scenes: three 256 px crops of the bundled Spain S1+S2 scene and the USA L1C band files
(tests/data), so the job spans two UTM zones and both input forms (a stack, band files)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.batch.job_outputs import build_mosaics
from core.batch.manifest import Manifest, fingerprint
from core.batch.run_many import run_many
from core.batch.scene_list import SceneEntry, read_scenes
from core.batch.scene_task import output_paths, worker_device
from core.engine import SceneRequest, run_scene
from core.engine.palette import cluster_colors, hex_rgb
from core.io.hashing import sha256_file

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "resources" / "models" / "mosaic-small-ben19")
SPAIN = ROOT / "resources" / "sample" / "spain" / "Spain_7370579"
USA = ROOT / "tests" / "data" / "s2-l1c-usa"
KINDS = ["dominant", "probabilities", "embeddings"]
REQUEST = {"threads": 1, "optical_bands": None, "clusters": 4, "stride": 16}


def _crop(src_path: Path, dst: Path, col: int, row: int, size: int = 256) -> str:
    with rasterio.open(src_path) as src:
        win = Window(col, row, size, size)
        prof = {**src.profile, "width": size, "height": size, "transform": src.window_transform(win)}
        with rasterio.open(dst, "w", **prof) as out:
            out.write(src.read(window=win))
            out.descriptions = src.descriptions if any(src.descriptions) else (
                ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
                if src.count == 13 else ("VV", "VH"))
    return str(dst)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[SceneEntry]:
    d = tmp_path_factory.mktemp("batch-inputs")
    out = []
    for i, (c, r) in enumerate([(0, 0), (256, 0), (128, 256)]):
        s2 = _crop(Path(f"{SPAIN}_S2Hand.tif"), d / f"spain{i}_s2.tif", c, r)
        s1 = _crop(Path(f"{SPAIN}_S1Hand.tif"), d / f"spain{i}_s1.tif", c, r)
        out.append(SceneEntry(f"spain-{i}", (s2,), (s1,)))
    out.append(SceneEntry("usa", tuple(sorted(str(p) for p in USA.glob("s2_B*.jp2")))))
    return out


def _job(out: Path, kinds=KINDS) -> dict:
    return {"out": str(out), "model": MODEL, "kinds": list(kinds), "device": "cpu", "request": dict(REQUEST),
            "command": "classify-many"}


@pytest.fixture(scope="module")
def client():
    from core.batch.cluster import open_client

    c, cluster, _ = open_client(None, workers=2, threads=1, dashboard=False)
    yield c
    c.close()
    cluster.close()


def _pixels(path: str) -> tuple:
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.crs, str(src.nodata)  # str: NaN == NaN


def test_a_two_worker_cluster_writes_what_single_runs_write(scenes, client, tmp_path):
    res = run_many(scenes, _job(tmp_path / "many"), client, show_progress=False)
    assert sorted(res.done) == sorted(s.name for s in scenes) and not res.failed
    workers = {json.loads((tmp_path / "many" / "manifest.json").read_text())["scenes"][s.name]["worker"]
               for s in scenes}
    assert len(workers) == 2, f"both workers should have run scenes: {workers}"
    for s in scenes:  # the reference: one engine run per scene in this process, same options
        ref = output_paths(tmp_path / "ref", s.name, KINDS)
        Path(ref["dominant"]).parent.mkdir(parents=True)
        from core.batch.scene_task import _input

        optical, _ = _input(s.optical, None, str(tmp_path), f"{s.name}-optical")
        run_scene(SceneRequest(model=MODEL, optical=optical, sar=s.sar[0] if s.sar else None, outputs=ref,
                               device="cpu", **REQUEST))
        got = output_paths(tmp_path / "many", s.name, KINDS)
        for k in KINDS:
            a, b = _pixels(ref[k]), _pixels(got[k])
            assert np.array_equal(a[0], b[0], equal_nan=True), f"{s.name} {k}: values differ from a single-process run"
            assert a[1:] == b[1:], f"{s.name} {k}: grid differs"
    assert set(res.mosaics) == {f"{k}_{c}" for k in KINDS for c in ("EPSG32618", "EPSG32630")}
    spain0 = output_paths(tmp_path / "many", "spain-0", ["dominant"])["dominant"]
    with rasterio.open(res.mosaics["dominant_EPSG32630"]) as m, rasterio.open(spain0) as one:
        assert m.crs == one.crs and m.colormap(1)[1] == one.colormap(1)[1]
        assert m.width > one.width  # three Spain crops side by side


def test_a_damaged_scene_is_reported_and_the_others_finish(scenes, client, tmp_path):
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(Path(scenes[0].optical[0]).read_bytes()[:4000])
    batch = [*scenes[:2], SceneEntry("damaged", (str(damaged),)), SceneEntry("gone", (str(tmp_path / "no.tif"),))]
    res = run_many(batch, _job(tmp_path / "out", ["dominant"]), client, retries=1, show_progress=False)
    assert sorted(res.done) == ["spain-0", "spain-1"]
    assert set(res.failed) == {"damaged", "gone"}
    # the engine's own message (its wording depends on where GDAL notices: at open or at a read)
    assert res.failed["damaged"].startswith("ValueError") and "damaged.tif" in res.failed["damaged"]
    assert "no.tif" in res.failed["gone"]
    assert "FAILED   ValueError" in res.table()
    assert not (tmp_path / "out" / "damaged" / "damaged_dominant.tif").exists()
    again = run_many(batch, _job(tmp_path / "out", ["dominant"]), client, retries=0, show_progress=False)
    assert sorted(again.skipped) == ["spain-0", "spain-1"] and set(again.failed) == {"damaged", "gone"}


def _write_csv(path: Path, scenes: list[SceneEntry]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "optical", "sar"])
        for s in scenes:
            w.writerow([s.name, s.optical[0] if len(s.optical) == 1 else str(Path(s.optical[0]).parent),
                        s.sar[0] if s.sar else ""])


def test_a_killed_job_resumes_and_redoes_only_what_was_not_finished(scenes, tmp_path, plugin_parent):
    listing = tmp_path / "scenes.csv"
    _write_csv(listing, scenes)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "core", "classify-many", "--scenes", str(listing), "--out", str(out),
           "--outputs", "dominant", "--workers", "1", "--threads", "1", "--no-dashboard", "--quiet",
           "--device", "cpu", "--stride", "16"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.json"
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if manifest.is_file() and Manifest(out).done():
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read()[-2000:]}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-job
        proc.wait()
    before = Manifest(out).done()
    assert 1 <= len(before) < len(scenes)
    stamps = {n: os.stat(out / r["outputs"]["dominant"]["path"]).st_mtime_ns for n, r in before.items()}
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(before)} finished before (skipped), {len(scenes) - len(before)} to run" in rerun.stdout
    after = Manifest(out).done()
    assert sorted(after) == sorted(s.name for s in scenes)
    for n in before:  # untouched
        assert os.stat(out / after[n]["outputs"]["dominant"]["path"]).st_mtime_ns == stamps[n]
    leftovers = [p.name for p in out.rglob(".*") if p.name != ".stac" and p.is_file()]
    assert not leftovers, f"temporaries left behind: {leftovers}"
    assert (out / "stac" / "collection.json").is_file()


def test_the_manifest_trusts_hashes_not_file_existence(scenes, tmp_path):
    job = _job(tmp_path, ["dominant"])
    res = run_many(scenes[:1], job, None, show_progress=False)
    assert res.done == ["spain-0"]
    path = Path(output_paths(tmp_path, "spain-0", ["dominant"])["dominant"])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    res = run_many(scenes[:1], job, None, show_progress=False)
    assert res.done == ["spain-0"] and not res.skipped
    res = run_many(scenes[:1], job, None, show_progress=False)
    assert res.skipped == ["spain-0"]
    other = {**job, "request": {**job["request"], "stride": 32}}  # other options: other outputs
    res = run_many(scenes[:1], other, None, show_progress=False)
    assert res.done == ["spain-0"]


def test_fingerprints_follow_inputs_and_options(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"x" * 10)
    a = fingerprint([str(f)], {"stride": 16}, "m")
    assert a == fingerprint([str(f)], {"stride": 16}, "m")
    assert a != fingerprint([str(f)], {"stride": 32}, "m") != fingerprint([str(f)], {"stride": 16}, "other")
    f.write_bytes(b"y" * 11)
    assert a != fingerprint([str(f)], {"stride": 16}, "m")
    with pytest.raises(FileNotFoundError):
        fingerprint([str(tmp_path / "none.tif")], {}, "m")


def test_csv_lists_read_relative_paths_band_folders_and_names(tmp_path):
    (tmp_path / "s2").mkdir()
    for b in ("B02", "B03", "B04"):
        (tmp_path / "s2" / f"{b}.tif").write_bytes(b"")
    (tmp_path / "s2" / "cloud_mask.tif").write_bytes(b"")
    (tmp_path / "x_s1.tif").write_bytes(b"")
    (tmp_path / "list.csv").write_text("optical,sar,name\ns2,x_s1.tif,site-1\n,x_s1.tif,\n"
                                       "S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419.tif,,\n")
    a, b, c = read_scenes(tmp_path / "list.csv")
    assert a.name == "site-1" and [Path(p).name for p in a.optical] == ["B02.tif", "B03.tif", "B04.tif"]
    assert a.sar == (str(tmp_path / "x_s1.tif"),)
    assert b.name == "x_s1" and b.optical == ()
    assert c.datetime == "2022-07-06T08:56:11Z"
    (tmp_path / "dup.csv").write_text("optical,name\na.tif,same\nb.tif,same\n")
    with pytest.raises(ValueError, match="unique"):
        read_scenes(tmp_path / "dup.csv")
    (tmp_path / "bad.csv").write_text("optical,name\na.tif,../up\n")
    with pytest.raises(ValueError, match="file name"):
        read_scenes(tmp_path / "bad.csv")
    (tmp_path / "none.csv").write_text("path,label\na.tif,x\n")
    with pytest.raises(ValueError, match="optical and/or sar"):
        read_scenes(tmp_path / "none.csv")


def test_stac_items_give_scenes_by_asset_band_and_shared_scene_property(tmp_path):
    import datetime as dt

    import pystac

    when = dt.datetime(2022, 7, 6, 8, 56, tzinfo=dt.timezone.utc)
    geom = {"type": "Point", "coordinates": [0, 0]}
    s2 = pystac.Item("S2-tile", geom, [0, 0, 0, 0], when, {"mosaic:scene": "site"})
    for key, fname in (("red", "T_B04.jp2"), ("nir08", "T_B8A.jp2"), ("B02", "T_B02.jp2"), ("thumbnail", "t.jpg"),
                       ("scl", "T_SCL.jp2")):
        s2.add_asset(key, pystac.Asset(str(tmp_path / fname)))
    s1 = pystac.Item("S1-grd", geom, [0, 0, 0, 0], when + dt.timedelta(days=1), {"mosaic:scene": "site"})
    s1.add_asset("vv", pystac.Asset(str(tmp_path / "vv.tif")))
    s1.add_asset("vh", pystac.Asset(str(tmp_path / "vh.tif")))
    alone = pystac.Item("optical-only", geom, [0, 0, 0, 0], when, {})
    alone.add_asset("optical", pystac.Asset(str(tmp_path / "stack.tif")))
    pystac.ItemCollection([s2, s1, alone]).save_object(dest_href=str(tmp_path / "items.json"))
    site, only = read_scenes(tmp_path / "items.json")
    assert site.name == "site" and site.optical_bands == ("B02", "B04", "B8A")
    assert [Path(p).name for p in site.optical] == ["T_B02.jp2", "T_B04.jp2", "T_B8A.jp2"]
    assert site.sar_bands == ("VH", "VV") and site.datetime.startswith("2022-07-06T08:56")
    assert only.optical == (str(tmp_path / "stack.tif"),) and only.optical_bands is None and only.sar == ()
    remote = pystac.Item("remote", geom, [0, 0, 0, 0], when, {})
    remote.add_asset("B04", pystac.Asset("https://example.com/B04.tif"))
    pystac.ItemCollection([remote]).save_object(dest_href=str(tmp_path / "remote.json"))
    with pytest.raises(ValueError, match="not a local file"):
        read_scenes(tmp_path / "remote.json")


def test_the_stac_collection_lists_every_finished_scene_with_its_outputs(scenes, tmp_path):
    import pystac

    res = run_many([scenes[0], scenes[3]], _job(tmp_path, ["dominant"]), None, show_progress=False)
    coll = pystac.read_file(res.catalog)
    items = {i.id: i for i in coll.get_items(recursive=True)}
    assert set(items) == {"spain-0", "usa"}
    item = items["spain-0"]
    assert item.properties["mosaic:stride"] == 16 and item.properties["mosaic:model"] == "mosaic-small-ben19"
    assert len(item.properties["mosaic:classes"]) == 19
    href = item.assets["dominant"].get_absolute_href()
    assert Path(href).is_file() and sha256_file(href) == item.assets["dominant"].extra_fields["mosaic:sha256"]
    assert -1 < item.bbox[0] < 0 and 38 < item.bbox[1] < 39  # Spain, in degrees
    assert {k for k in coll.assets} == {"mosaic_dominant_EPSG32618", "mosaic_dominant_EPSG32630"}
    raw = json.loads(Path(res.catalog).parent.joinpath("spain-0", "spain-0.json").read_text())
    assert not raw["assets"]["dominant"]["href"].startswith("/"), "asset paths must be relative"


def test_mosaics_are_one_vrt_per_kind_and_crs(tmp_path):
    assert build_mosaics(tmp_path, {}) == {}


def test_workers_take_one_gpu_each_by_their_number(monkeypatch):
    import torch

    assert worker_device("cpu") == "cpu" and worker_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    class W:
        name = 3

    monkeypatch.setattr("core.batch.scene_task._worker", lambda: W())
    assert worker_device("auto") == "cuda:1"
    W.name = "tcp://10.0.0.5:40123"  # another cluster's worker: the GPU its launcher made visible
    assert worker_device("auto") == "cuda:0"


def test_local_clusters_are_sized_by_gpus_cores_and_memory(monkeypatch):
    from core.batch import cluster

    monkeypatch.setattr(cluster, "_gpu_count", lambda: 0)
    monkeypatch.setattr(cluster, "_memory_gb", lambda: 64.0)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert cluster.local_size() == (8, 2, 0)
    monkeypatch.setattr(cluster, "_memory_gb", lambda: 8.0)
    assert cluster.local_size() == (4, 2, 0)  # 2 GB per worker
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cluster.local_size() == (2, 1, 0)
    monkeypatch.setattr(cluster, "_gpu_count", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert cluster.local_size() == (4, 8, 4)
    assert cluster.local_size(workers=3, threads=2) == (3, 2, 4)


def test_an_existing_scheduler_is_used_as_given(scenes, client, tmp_path):
    from core.batch.cluster import open_client

    other, cluster, threads = open_client(client.scheduler.address)
    try:
        assert cluster is None and threads >= 1
        res = run_many(scenes[3:], _job(tmp_path, ["dominant"]), other, show_progress=False)
        assert res.done == ["usa"]
    finally:
        other.close()


def test_clusters_are_fitted_once_over_the_job_and_mean_the_same_in_every_scene(scenes, tmp_path):
    from core.batch.job_clusters import CENTROIDS

    spain = scenes[:3]
    with pytest.raises(ValueError, match="same inputs"):
        run_many(scenes, _job(tmp_path, ["clusters"]), None, show_progress=False)
    res = run_many(spain[:2], _job(tmp_path, ["clusters"]), None, show_progress=False)
    assert sorted(res.relabelled) == ["spain-0", "spain-1"]
    fit = json.loads((tmp_path / CENTROIDS).read_text())
    centroids = np.array(fit["centroids"], np.float32)
    assert fit["k"] == 4 and fit["scenes"] == ["spain-0", "spain-1"]
    for s in spain[:2]:
        paths = output_paths(tmp_path, s.name, ["clusters", "embeddings"])
        with rasterio.open(paths["clusters"]) as c, rasterio.open(paths["embeddings"]) as e:
            assert c.tags()["centroids_sha256"] == fit["sha256"] and c.colormap(1)[0] == hex_rgb(cluster_colors(4)[0])
            lab, emb = c.read(1), e.read()
        v = emb.reshape(emb.shape[0], -1).T
        ok = np.isfinite(v).all(1)
        nearest = ((v[ok, None, :] - centroids[None]) ** 2).sum(2).argmin(1)
        assert np.array_equal(lab.reshape(-1)[ok], nearest) and (lab.reshape(-1)[~ok] == 255).all()
    again = run_many(spain[:2], _job(tmp_path, ["clusters"]), None, show_progress=False)
    assert again.relabelled == [] and sorted(again.skipped) == ["spain-0", "spain-1"]
    grown = run_many(spain, _job(tmp_path, ["clusters"]), None, show_progress=False)
    assert grown.done == ["spain-2"] and sorted(grown.relabelled) == ["spain-0", "spain-1", "spain-2"]
    assert json.loads((tmp_path / CENTROIDS).read_text())["scenes"] == ["spain-0", "spain-1", "spain-2"]
