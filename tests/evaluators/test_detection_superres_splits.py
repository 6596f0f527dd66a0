"""Split fingerprints of the detection and super-resolution data modules: they identify the
validation members (so a search records them and refuses to resume onto another split), follow the
split seed and the options that change what is validated on, and ignore the batch size."""

from __future__ import annotations

import json
import os

import pytest

from evaluators import get_datamodule
from evaluators.data.detection import content_key
from evaluators.data.splits import fingerprint, split_identity

from test_detection_data import _image, _voc  # tests/evaluators is on sys.path (pytest rootdir insertion)

TINY = {"train_images": 8, "val_images": 6, "canvas": 32, "max_size": 16}


def test_digits_detection_fingerprint_names_the_validation_canvases():
    a = split_identity(get_datamodule("digits-detection", seed=0, batch_size=4, **TINY))
    b = split_identity(get_datamodule("digits-detection", seed=0, batch_size=16, **TINY))
    c = split_identity(get_datamodule("digits-detection", seed=1, **TINY))
    d = split_identity(get_datamodule("digits-detection", seed=0, **{**TINY, "max_objects": 1}))
    e = split_identity(get_datamodule("digits-detection", seed=0, **{**TINY, "val_images": 5}))
    assert a == b and a["val_size"] == 6 and a["val_sha256"] and a["test_size"] == 0
    assert len({a["val_sha256"], c["val_sha256"], d["val_sha256"], e["val_sha256"]}) == 4
    dm = get_datamodule("digits-detection", seed=0, **TINY)
    images, targets = next(iter(dm.val_dataloader()))
    keys = [content_key(i, img, t) for i, (img, t) in enumerate(zip(images, targets))]
    assert fingerprint(keys) == a["val_sha256"], "the fingerprint must be of what the validation loader yields"


def test_voc_fingerprint_is_the_validation_files_and_follows_the_seed(tmp_path):
    with_lists, no_lists = tmp_path / "l", tmp_path / "n"
    _voc(with_lists, with_lists=True)
    _voc(no_lists, with_lists=False)
    dm = get_datamodule("voc", root=str(with_lists), image_size=32, seed=0)
    assert dm.split_keys() == {"val": [os.path.join("JPEGImages", "c.jpg")], "test": []}
    ids = {s: split_identity(get_datamodule("voc", root=str(no_lists), image_size=32, seed=s, val_fraction=0.34)) for s in range(6)}
    assert all(i["val_size"] == 1 for i in ids.values())
    assert len({i["val_sha256"] for i in ids.values()}) > 1, "another split seed must move the split"


def test_coco_fingerprint_uses_the_val_json_images(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for i, n in enumerate(("a.png", "b.png", "c.png")):
        _image(images / n, 40, 30, i)
    cats = [{"id": 3, "name": "x"}]

    def coco(path, names):
        path.write_text(json.dumps({"images": [{"id": i, "file_name": n, "width": 40, "height": 30} for i, n in enumerate(names)],
                                    "annotations": [{"id": i, "image_id": i, "category_id": 3, "bbox": [1, 1, 10, 10], "iscrowd": 0}
                                                    for i in range(len(names))], "categories": cats}))
        return path

    tr, va = coco(tmp_path / "tr.json", ["a.png", "b.png"]), coco(tmp_path / "va.json", ["c.png"])
    dm = get_datamodule("coco", images=str(images), train_json=str(tr), val_json=str(va), image_size=16)
    assert dm.split_keys() == {"val": ["c.png"], "test": []}
    split = get_datamodule("coco", images=str(images), train_json=str(coco(tmp_path / "all.json", ["a.png", "b.png", "c.png"])),
                           image_size=16, val_fraction=0.34, seed=0)
    assert split_identity(split)["val_size"] == 1 and split.split_keys()["val"][0] in {"a.png", "b.png", "c.png"}


def test_skimage_sr_fingerprint_follows_the_seed_and_the_validation_protocol():
    small = ["camera.png", "coins.png", "moon.png", "page.png", "text.png", "brick.png", "grass.png", "gravel.png"]
    kw = {"patch_size": 8, "patches_per_epoch": 4, "val_patch_size": 16, "images": small}
    a = split_identity(get_datamodule("skimage-sr", seed=0, batch_size=4, **kw))
    b = split_identity(get_datamodule("skimage-sr", seed=0, batch_size=8, **kw))
    c = split_identity(get_datamodule("skimage-sr", seed=1, **kw))
    d = split_identity(get_datamodule("skimage-sr", seed=0, **{**kw, "val_patch_size": 24}))
    assert a == b and a["val_size"] == 2 and a["test_size"] == 0
    assert len({a["val_sha256"], c["val_sha256"], d["val_sha256"]}) == 3
    dm = get_datamodule("skimage-sr", seed=0, **kw)
    assert [k.split("|")[0] for k in dm.split_keys()["val"]] == dm.val_names


def test_sr_folder_fingerprint_names_the_files(tmp_path):
    from test_superres import _png

    for i in range(4):
        _png(tmp_path / f"im{i}.png", 24, 24, seed=i)
    keys = get_datamodule("srfolder", root=str(tmp_path), seed=0, val_fraction=0.5, patch_size=8).split_keys()["val"]
    assert len(keys) == 2 and all(k.startswith("im") and k.endswith("|full") for k in keys)


def fake_detection(model, *, datamodule, epochs, seed, reporter):
    """A trial without training: the resume check is about the split, not the scores."""
    return {"val_map": 0.1 + seed % 5 / 100, "epochs": epochs}


def test_resume_refuses_a_changed_detection_split(tmp_path, monkeypatch):
    # max_objects changes the canvases but not their number: only the content fingerprint sees it
    from search.config import load_config
    from search.engine import SearchEngine
    from search.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"], name="det-split", space="detector",
                      out=str(tmp_path / "run"), budget={"trials": 1, "epochs": 1}, strategy={"name": "random"}, executor="local",
                      save_weights=False, seed=3, objectives=[{"name": "val_map", "direction": "maximize"}], reference_point={"val_map": 0.0},
                      evaluator={"function": "test_detection_superres_splits:fake_detection", "data": "digits-detection", "data_kwargs": dict(TINY)})
    first = SearchEngine(cfg, progress=False).run()
    assert first["split"]["val_size"] == TINY["val_images"] and first["split"]["val_sha256"]
    same = load_config(tmp_path / "run" / "config.yaml", [], out=str(tmp_path / "run"))
    assert SearchEngine(same, progress=False).run(resume=True)["parent_run_id"] == first["parent_run_id"]
    moved = load_config(tmp_path / "run" / "config.yaml", ["evaluator.data_kwargs.max_objects=1"], out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="split recorded on the search's parent run.*val_sha256"):
        SearchEngine(moved, progress=False).run(resume=True)
