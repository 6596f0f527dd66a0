"""Detection data: embedded digits canvases, Pascal VOC and COCO folders the tests make."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import evaluators
from evaluators.data.detection import collate_detection


def test_digits_detection_is_deterministic_with_exact_boxes():
    a = evaluators.get_datamodule("digits-detection", train_images=20, val_images=8, seed=3)
    b = evaluators.get_datamodule("digits-detection", train_images=20, val_images=8, seed=3)
    a.setup()
    b.setup()
    assert a.input_shape == (1, 64, 64) and a.num_classes == 10
    for i in range(20):
        (xa, ta), (xb, tb) = a.train_set[i], b.train_set[i]
        assert torch.equal(xa, xb) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
        assert 1 <= len(ta["labels"]) <= 3
        for x1, y1, x2, y2 in ta["boxes"].int().tolist():  # the box is the ink: ink on every edge, none just outside
            assert xa[0, y1:y2, x1:x2].max() > 0
            assert xa[0, y1:y2, x1].max() > 0 and xa[0, y1:y2, x2 - 1].max() > 0
            assert xa[0, y1, x1:x2].max() > 0 and xa[0, y2 - 1, x1:x2].max() > 0
    c = evaluators.get_datamodule("digits-detection", train_images=20, val_images=8, seed=4)
    c.setup()
    assert not torch.equal(c.train_set[0][0], a.train_set[0][0])
    images, targets = next(iter(a.train_dataloader()))
    assert images.shape[1:] == (1, 64, 64) and isinstance(targets, list) and len(targets) == len(images)


def test_digits_detection_rejects_bad_options():
    with pytest.raises(ValueError, match="min_size <= max_size <= canvas"):
        evaluators.get_datamodule("digits-detection", min_size=30, max_size=20)


def _image(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _voc(root, with_lists):
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    objs = {"a": [("dog", 11, 21, 60, 40, 0), ("cat", 1, 1, 20, 20, 1)], "b": [("person", 5, 5, 80, 50, 0)],
            "c": [("dog", 30, 10, 50, 45, 0)]}
    for i, (name, items) in enumerate(objs.items()):
        _image(root / "JPEGImages" / f"{name}.jpg", 100, 50, i)
        body = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                       f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for c, x1, y1, x2, y2, d in items)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>100</width><height>50</height></size>{body}</annotation>")
    if with_lists:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("c\n")


def test_voc_loader_reads_boxes_scaled_and_skips_difficult(tmp_path):
    _voc(tmp_path, with_lists=True)
    dm = evaluators.get_datamodule("voc", root=str(tmp_path), image_size=32)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 20
    dm.setup()
    assert len(dm.train_set) == 2 and len(dm.val_set) == 1
    x, t = dm.train_set[0]
    assert x.shape == (3, 32, 32)
    dog = evaluators.data.detection_files.VOC_CLASSES.index("dog")
    assert t["labels"].tolist() == [dog]  # the difficult cat is left out
    # VOC 1-based inclusive [11, 21, 60, 40] -> continuous [10, 20, 60, 40] on 100 x 50, scaled to 32 x 32
    assert t["boxes"][0].tolist() == pytest.approx([10 * 0.32, 20 * 0.64, 60 * 0.32, 40 * 0.64])
    images, targets = collate_detection([dm.train_set[0], dm.train_set[1]])
    assert images.shape == (2, 3, 32, 32) and len(targets) == 2


def test_voc_without_lists_splits_by_seed_and_errors_name_the_problem(tmp_path):
    _voc(tmp_path, with_lists=False)
    dm = evaluators.get_datamodule("voc", root=str(tmp_path), image_size=16, val_fraction=0.34, classes=["dog", "cat", "person"])
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 3 and dm.num_classes == 3
    with pytest.raises(ValueError, match="Annotations"):
        evaluators.get_datamodule("voc", root=str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    _voc(bad, with_lists=False)
    dm = evaluators.get_datamodule("voc", root=str(bad), classes=["dog"])
    with pytest.raises(ValueError, match="names class 'cat'"):
        dm.setup()


def test_coco_loader_maps_categories_and_skips_crowds(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    for i in range(3):
        _image(img / f"{i}.png", 40, 20, i)
    doc = {"images": [{"id": i + 1, "file_name": f"{i}.png", "width": 40, "height": 20} for i in range(3)],
           "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 2, 10, 8], "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 20], "iscrowd": 1},
                           {"id": 3, "image_id": 2, "category_id": 3, "bbox": [10, 5, 20, 10]}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    (tmp_path / "val.json").write_text(json.dumps({**doc, "images": doc["images"][2:], "annotations": []}))
    dm = evaluators.get_datamodule("coco", images=str(img), train_json=str(tmp_path / "train.json"),
                                   val_json=str(tmp_path / "val.json"), image_size=16)
    assert dm.class_names == ["dog", "cat"] and dm.num_classes == 2  # ascending category id
    dm.setup()
    assert len(dm.train_set) == 3 and len(dm.val_set) == 1
    x, t = dm.train_set[0]
    assert x.shape == (3, 16, 16)
    assert t["labels"].tolist() == [1]  # cat (id 7) -> 1; the crowd is left out
    assert t["boxes"][0].tolist() == pytest.approx([4 * 0.4, 2 * 0.8, 14 * 0.4, 10 * 0.8])
    assert len(dm.val_set[0][1]["labels"]) == 0
    with pytest.raises(ValueError, match="train_json"):
        evaluators.get_datamodule("coco", images=str(img), train_json=str(tmp_path / "missing.json"))
