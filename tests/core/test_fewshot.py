"""Few-shot sample extraction and fine-tuning on the real Spain S1+S2 sample scene."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rasterio.warp import transform_geom

from core.fewshot import (
    FinetuneConfig,
    LabelledPolygon,
    extend_model,
    extract_samples,
    finetune_from_polygons,
    label_hash,
    parse_labels,
    split_by_polygon,
)
from core.fewshot.pipeline import class_list
from core.fewshot.scene import open_scene
from core.io.model_file import load_model, read_card

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "models" / "mosaic-small-ben19"
S2 = str(ROOT / "resources" / "sample" / "spain" / "Spain_7370579_S2Hand.tif")
S1 = str(ROOT / "resources" / "sample" / "spain" / "Spain_7370579_S1Hand.tif")
# scene: lon -0.7819 .. -0.7359, lat 38.0828 .. 38.1288 (EPSG:4326)


def box(x: float, y: float, d: float = 0.003) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]}


LABELS = [["Arable land"], ["Orchards"], ["Arable land", "Orchards"], ["Urban fabric"]]
POLYGONS = [LabelledPolygon(box(-0.775 + 0.009 * (i % 4), 38.09 + 0.009 * (i // 4)), LABELS[i % 4], i)
            for i in range(8)]


@pytest.fixture(scope="module")
def card() -> dict:
    return read_card(MODEL)


@pytest.fixture(scope="module")
def scene(card):
    s = open_scene(card, S2, S1, optical_bands="S2-13")
    yield s
    s.close()


def test_parse_labels_and_hash() -> None:
    assert parse_labels(" Arable land ;Orchards;; Orchards ") == ["Arable land", "Orchards"]
    assert parse_labels("a,b", ",") == ["a", "b"] and parse_labels(None) == []
    h = label_hash(POLYGONS, "EPSG:4326")
    assert h == label_hash(list(reversed(POLYGONS)), "EPSG:4326")
    changed = [LabelledPolygon(p.geometry, ["Pastures"] if i == 0 else p.labels) for i, p in enumerate(POLYGONS)]
    assert h != label_hash(changed, "EPSG:4326") and len(h) == 64


def test_class_list_appends_new_classes(card) -> None:
    base = [c["name"] for c in card["classes"]]
    classes = class_list(base, POLYGONS, scheme=["Greenhouses", "Orchards"])
    assert classes[:19] == tuple(base) and classes[19:] == ("Orchards",)  # unused scheme class left out


def test_windows_follow_polygons_and_reprojection(scene, card) -> None:
    classes = class_list([c["name"] for c in card["classes"]], POLYGONS)
    s = extract_samples(POLYGONS, "EPSG:4326", scene, classes, windows_per_polygon=3, seed=1)
    assert s.s2.shape[1:] == (12, 120, 120) and s.s1.shape[1:] == (2, 120, 120)
    assert s.counts["polygons_used"] == 8 and len(s) == s.counts["windows"] <= 24
    assert np.isfinite(s.s2).all() and abs(float(s.s2.mean())) < 3
    k = classes.index("Orchards")
    assert s.labels[s.polygon == 2][:, [classes.index("Arable land"), k]].min() == 1
    # the same polygons in the grid's UTM zone land on the same windows
    utm = [LabelledPolygon(transform_geom("EPSG:4326", "EPSG:32630", p.geometry), p.labels, p.fid) for p in POLYGONS]
    s_utm = extract_samples(utm, "EPSG:32630", scene, classes, windows_per_polygon=1)
    s_geo = extract_samples(POLYGONS, "EPSG:4326", scene, classes, windows_per_polygon=1)
    assert all(abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1 for a, b in zip(s_utm.origins, s_geo.origins))


def test_windows_at_the_edge_are_moved_inside_or_skipped_and_counted(scene, card) -> None:
    """A window reaching past the scene would teach the model what padding looks like: windows
    of a polygon at the edge are shifted inside the grid; those still mostly no-data (the
    rotated footprint's corner) are skipped and counted."""
    classes = [c["name"] for c in card["classes"]]
    corner = LabelledPolygon(box(-0.7830, 38.1275, 0.002), ["Arable land"], "corner")
    edge = LabelledPolygon(box(-0.7815, 38.11, 0.0008), ["Arable land"], "edge")
    inside = [LabelledPolygon(box(-0.770, 38.10), ["Arable land"], i) for i in range(2)]
    s = extract_samples([corner, edge, *inside], "EPSG:4326", scene, classes, windows_per_polygon=4, max_nodata=0.2)
    g, p = scene.grid, scene.patch
    assert s.counts["skipped_outside"] == 0
    assert all(0 <= r <= g.height - p and 0 <= c <= g.width - p for r, c in s.origins)
    assert any(c == 0 for _, c in s.origins[s.polygon.tolist().index(1):])  # the edge polygon's, moved in
    strict = extract_samples([corner, *inside], "EPSG:4326", scene, classes, windows_per_polygon=4, max_nodata=0.0)
    assert strict.counts["skipped_nodata"] >= 1 and strict.warnings and "skipped" in strict.warnings[0]


@pytest.mark.parametrize("polys, message", [
    ([LabelledPolygon(box(10.0, 50.0), ["Arable land"], 1)] * 2, "no polygon overlaps"),
    ([LabelledPolygon(box(-0.77, 38.10), [], 7)], "name no class"),
    ([LabelledPolygon(box(-0.77, 38.10), ["Arable lnd"], 3)], "did you mean 'Arable land'"),
    ([LabelledPolygon(box(-0.77, 38.10), ["Arable land"], 1),
      LabelledPolygon(box(10.0, 50.0), ["Pastures"], 2)], "'Pastures' have no valid window"),
    ([LabelledPolygon(box(-0.77, 38.10), ["Arable land"], 1)], "at least 4 needed"),
])
def test_clear_errors(scene, card, polys, message) -> None:
    classes = [c["name"] for c in card["classes"]]
    with pytest.raises(ValueError, match=message):
        extract_samples(polys, "EPSG:4326", scene, classes, windows_per_polygon=2)


def test_split_by_polygon_keeps_polygons_whole(scene, card) -> None:
    classes = class_list([c["name"] for c in card["classes"]], POLYGONS)
    s = extract_samples(POLYGONS, "EPSG:4326", scene, classes, windows_per_polygon=2)
    tr, va = split_by_polygon(s, 0.3, seed=0)
    assert len(va) and not set(s.polygon[tr]) & set(s.polygon[va])
    assert (s.labels[tr].sum(0) >= (s.labels.sum(0) > 0)).all()  # every used class still trains


def test_extend_model_copies_known_rows_and_imprints_new() -> None:
    model, card = load_model(MODEL)
    classes = list(model.cfg.classes) + ["Orchards"]
    torch.manual_seed(0)
    x2, x1 = torch.randn(6, 12, 120, 120), torch.randn(6, 2, 120, 120)
    with torch.no_grad():
        f = model.features(x2, x1)
    labels = np.zeros((6, 20), np.float32)
    labels[:3, 19] = 1
    new, new_card = extend_model(model, card, classes, {"Orchards": "#ff0000"},
                                 {m: v.numpy() for m, v in f.items()}, labels)
    with torch.no_grad():
        a, b = model(x2, x1)["logits"], new(x2, x1)["logits"]
    assert torch.allclose(a, b[:, :19], atol=1e-5)
    assert (b[:3, 19].min() > b[3:, 19].max())
    assert new_card["classes"][-1] == {"name": "Orchards", "color": "#ff0000"} and len(new_card["classes"]) == 20


def test_finetune_saves_model_card_and_report(tmp_path) -> None:
    out = tmp_path / "spain-ft"
    steps = []
    res = finetune_from_polygons(str(MODEL), POLYGONS, "EPSG:4326", S2, S1, out,
                                 FinetuneConfig(epochs=1, windows_per_polygon=3, unlabelled=8, device="cpu", threads=2),
                                 optical_bands="S2-13", colors={"Orchards": "#123456"},
                                 label_source={"layer": "test labels"}, progress=steps.append)
    assert steps[-1] == 1.0 and all(b >= a for a, b in zip(steps, steps[1:]))
    model, card = load_model(out)
    assert list(model.cfg.classes)[-1] == "Orchards" and card["classes"][-1]["color"] == "#123456"
    tr = card["training"]
    assert tr["base_model"]["name"] == "mosaic-small-ben19" and tr["new_classes"] == ["Orchards"]
    assert tr["labels"]["hash"] == label_hash(POLYGONS, "EPSG:4326") and tr["labels"]["layer"] == "test labels"
    assert tr["config"]["train_parts"] == "head" and tr["history"][0]["supcon"] > 0
    val = card["metrics"]["validation"]["metrics"]
    assert val is not None and val["n_samples"] > 0
    assert Path(res.report_png).stat().st_size > 10_000 and "Orchards" in Path(res.report_html).read_text()
    # the frozen encoders did not move
    base, _ = load_model(MODEL)
    assert torch.equal(base.encoders["s2"].state_dict()["conv1.weight"], model.encoders["s2"].state_dict()["conv1.weight"])
    assert json.loads(Path(str(out) + ".json").read_text())["sha256"]


def test_finetune_cancel_writes_nothing(tmp_path) -> None:
    from core.fewshot import Cancelled

    with pytest.raises(Cancelled):
        finetune_from_polygons(str(MODEL), POLYGONS, "EPSG:4326", S2, S1, tmp_path / "x",
                               FinetuneConfig(epochs=1, windows_per_polygon=2, unlabelled=0, device="cpu"),
                               optical_bands="S2-13", is_cancelled=lambda: True)
    assert not list(tmp_path.iterdir())


def test_labels_match_known_classes_whatever_their_case_and_spacing():
    from core.fewshot.samples import match_known_classes

    known = ["Arable land", "Urban fabric", "Inland waters"]
    got = match_known_classes([LabelledPolygon({}, ["arable  LAND"], 1), LabelledPolygon({}, ["Orchards"], 2),
                               LabelledPolygon({}, ["orchards", " Urban Fabric "], 3)], known)
    assert [p.labels for p in got] == [["Arable land"], ["Orchards"], ["Orchards", "Urban fabric"]]
    for typo, meant in (("Arable lnd", "Arable land"), ("Inland water", "Inland waters"), ("Urbn fabric", "Urban fabric")):
        with pytest.raises(ValueError, match=f"'{typo}' .*looks like '{meant}'"):
            match_known_classes([LabelledPolygon({}, [typo], 7)], known)
    for new in ("Flood water", "Orchards", "Forest"):  # new classes, not near a known one
        assert match_known_classes([LabelledPolygon({}, [new], 1)], known)[0].labels == [new]


@pytest.mark.parametrize("sar_bands", [None, "VV,VH"])
def test_fine_tuning_reads_inputs_as_the_engine_does(card, tmp_path, sar_bands) -> None:
    """The same bands, offset, SAR units, grid and warnings (level, values) as a classify run of the
    same inputs: a model is fine-tuned on the numbers it later classifies."""
    import rasterio

    from core.engine.engine_model import load_engine_model
    from core.engine.plan import make_plan
    from core.engine.request import SceneRequest

    lin = tmp_path / "s1_linear.tif"  # the SAR input in linear power: both must convert it to dB
    with rasterio.open(S1) as src:
        prof, db, names = src.profile, src.read(), src.descriptions
    with rasterio.open(lin, "w", **{**prof, "dtype": "float32"}) as dst:
        dst.write(np.where(np.isfinite(db), 10 ** (db / 10), db).astype("float32"))
        dst.descriptions = names
    s = open_scene(card, S2, str(lin), optical_bands="S2-13", sar_bands=sar_bands)
    req = SceneRequest(model=str(MODEL), optical=S2, sar=str(lin), optical_bands="S2-13", sar_bands=sar_bands,
                       outputs={"dominant": str(tmp_path / "d.tif")})
    plan = make_plan(req, load_engine_model(str(MODEL), torch.device("cpu")))
    try:
        assert s.grid.crs == plan.grid.crs and s.grid.transform == plan.grid.transform
        assert (s.grid.width, s.grid.height) == (plan.grid.width, plan.grid.height)
        assert {m: r.indexes for m, r in s.readers.items()} == {m: plan.maps[m].indexes for m in plan.maps}
        assert s.readers["s1"].to_db and plan.to_db
        engine_input_warnings = [w for w in plan.warnings if not w.startswith("inputs resampled")]
        assert s.warnings == engine_input_warnings
        assert any("L1C" in w for w in s.warnings)  # the L1C sample against the L2A model
        assert any("linear power" in w for w in s.warnings)
    finally:
        s.close()
        plan.close()
