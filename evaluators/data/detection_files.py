"""Pascal VOC (XML + JPEG folders) and COCO (JSON + images) detection data from local paths.

Both resize every image to ``image_size`` x ``image_size`` (no letterbox: boxes are scaled by the
same x and y factors), scale pixels to [0, 1] and standardise with ``mean``/``std`` (0.5 each by
default). Images are read lazily with Pillow, one per item. Nothing is downloaded.

Coordinates. VOC boxes are 1-based inclusive pixel indices; they become continuous
``[xmin - 1, ymin - 1, xmax, ymax]`` (the area the pixels cover). COCO boxes ``[x, y, w, h]`` are
continuous already and become ``[x, y, x + w, y + h]``. Objects marked ``difficult`` (VOC) or
``iscrowd`` (COCO) are left out of the targets (the official evaluations ignore them); so are
boxes with no area.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .detection import DetectionDataModule, Target, make_target
from .registry import register_datamodule

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
               "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


class FileDetectionDataset(Dataset):
    """Images read from disk on access, resized to a square, with boxes scaled alike."""

    def __init__(self, files: Sequence[Path], boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], image_size: int,
                 mean: float, std: float) -> None:
        self.files, self.boxes, self.labels = list(files), list(boxes), list(labels)
        self.size, self.mean, self.std = int(image_size), float(mean), float(std)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
            w, h = im.size
            im = im.resize((self.size, self.size), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 255.0
        image = torch.from_numpy((x - self.mean) / self.std).permute(2, 0, 1).contiguous()
        b = self.boxes[i].astype(np.float32).copy()
        if len(b):
            b[:, [0, 2]] *= self.size / w
            b[:, [1, 3]] *= self.size / h
        return image, make_target(b, self.labels[i])


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction} leaves no training image out of {n}")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class _FileDetectionModule(DetectionDataModule):
    def __init__(self, image_size: int, mean: float, std: float, val_fraction: float, seed: int, batch_size: int,
                 num_workers: int) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if int(image_size) < 8:
            raise ValueError(f"{self.name}: image_size must be an integer >= 8, got {image_size}")
        if not float(std) > 0:
            raise ValueError(f"{self.name}: std must be > 0, got {std}")
        self.image_size, self.mean, self.std, self.val_fraction = int(image_size), float(mean), float(std), float(val_fraction)
        self.input_shape = (3, self.image_size, self.image_size)

    def _key_root(self) -> Path:
        """The folder validation files are named relative to in :meth:`split_keys`."""
        raise NotImplementedError

    def split_keys(self) -> dict[str, list]:
        """Validation images as paths relative to :meth:`_key_root` (no test split)."""
        self.setup("fit")
        root = self._key_root()
        return {"val": [os.path.relpath(f, root) for f in self.val_set.files], "test": []}

    def _dataset(self, records: Sequence[tuple[Path, np.ndarray, np.ndarray]]) -> FileDetectionDataset:
        return FileDetectionDataset([r[0] for r in records], [r[1] for r in records], [r[2] for r in records],
                                    self.image_size, self.mean, self.std)


def parse_voc_xml(path: Path, class_index: dict[str, int], keep_difficult: bool = False) -> tuple[str, np.ndarray, np.ndarray]:
    """(image file name, boxes (N, 4) continuous xyxy, labels (N,)) of one VOC annotation file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"voc: annotation {path} is not valid XML ({exc})") from None
    filename = (root.findtext("filename") or f"{path.stem}.jpg").strip()
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_index:
            raise ValueError(f"voc: annotation {path} names class {name!r}, expected one of {sorted(class_index)}")
        if not keep_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        bb = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"voc: annotation {path}: object {name!r} needs a bndbox with numeric xmin, ymin, xmax, ymax") from None
        box = [x1 - 1.0, y1 - 1.0, x2, y2]
        if box[2] > box[0] and box[3] > box[1]:
            boxes.append(box)
            labels.append(class_index[name])
    return filename, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


@register_datamodule("voc")
class VOCDetectionDataModule(_FileDetectionModule):
    """Pascal VOC layout under ``root``: ``Annotations/*.xml``, ``JPEGImages/*``, and optionally
    ``ImageSets/Main/{train_split,val_split}.txt`` (image ids, one a line). Without those lists the
    annotated images are split by ``seed`` with ``val_fraction``. ``classes`` defaults to VOC's 20."""

    name = "voc"

    def __init__(self, root: str | Path, classes: Sequence[str] = VOC_CLASSES, image_size: int = 128, train_split: str = "train",
                 val_split: str = "val", val_fraction: float = 0.2, keep_difficult: bool = False, mean: float = 0.5,
                 std: float = 0.5, seed: int = 0, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__(image_size, mean, std, val_fraction, seed, batch_size, num_workers)
        self.root = Path(root)
        for sub in ("Annotations", "JPEGImages"):
            if not (self.root / sub).is_dir():
                raise ValueError(f"voc: root {str(self.root)!r} has no {sub}/ folder; expected the VOC layout (Annotations/, JPEGImages/)")
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"voc: classes must be distinct names, got {list(classes)!r}")
        self.class_names = list(classes)
        self.num_classes = len(self.class_names)
        self.train_split, self.val_split, self.keep_difficult = train_split, val_split, bool(keep_difficult)

    def _key_root(self) -> Path:
        return self.root

    def _records(self, ids: Sequence[str]) -> list[tuple[Path, np.ndarray, np.ndarray]]:
        index = {c: i for i, c in enumerate(self.class_names)}
        out = []
        for i in ids:
            xml = self.root / "Annotations" / f"{i}.xml"
            if not xml.is_file():
                raise ValueError(f"voc: image id {i!r} has no annotation {xml}")
            fname, boxes, labels = parse_voc_xml(xml, index, self.keep_difficult)
            img = self.root / "JPEGImages" / fname
            if not img.is_file():
                raise ValueError(f"voc: annotation {xml} names image {fname!r}, not found in {self.root / 'JPEGImages'}")
            out.append((img, boxes, labels))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        lists = self.root / "ImageSets" / "Main"
        tr_file, va_file = lists / f"{self.train_split}.txt", lists / f"{self.val_split}.txt"
        if tr_file.is_file() and va_file.is_file():
            tr = [s.split()[0] for s in tr_file.read_text().splitlines() if s.strip()]
            va = [s.split()[0] for s in va_file.read_text().splitlines() if s.strip()]
        else:
            ids = sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
            if len(ids) < 2:
                raise ValueError(f"voc: {self.root / 'Annotations'} holds {len(ids)} annotation file(s); need at least 2 to split")
            a, b = _split(len(ids), self.val_fraction, self.seed)
            tr, va = [ids[k] for k in a], [ids[k] for k in b]
        self.train_set = self._dataset(self._records(tr))
        self.val_set = self._dataset(self._records(va))


def parse_coco_json(path: Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[int], list[str]]:
    """(records (file name, boxes, category ids), sorted category ids, their names) of a COCO file."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"coco: cannot read annotation file {path} ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise ValueError(f"coco: {path} must be a JSON object with lists 'images', 'annotations', 'categories'")
    cats = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in doc["categories"])
    per_image: dict[int, list[tuple[list[float], int]]] = {int(im["id"]): [] for im in doc["images"]}
    for a in doc["annotations"]:
        if a.get("iscrowd", 0):
            continue
        iid = int(a["image_id"])
        if iid not in per_image:
            raise ValueError(f"coco: {path}: annotation {a.get('id')} refers to unknown image_id {iid}")
        x, y, w, h = (float(v) for v in a["bbox"])
        if w > 0 and h > 0:
            per_image[iid].append(([x, y, x + w, y + h], int(a["category_id"])))
    records = []
    for im in sorted(doc["images"], key=lambda d: int(d["id"])):
        objs = per_image[int(im["id"])]
        records.append((str(im["file_name"]), np.asarray([o[0] for o in objs], dtype=np.float32).reshape(-1, 4),
                        np.asarray([o[1] for o in objs], dtype=np.int64)))
    return records, [c[0] for c in cats], [c[1] for c in cats]


@register_datamodule("coco")
class COCODetectionDataModule(_FileDetectionModule):
    """COCO-style JSON (``images``, ``annotations`` with ``bbox`` = [x, y, w, h], ``categories``) and
    an image folder. ``train_json`` + ``val_json`` give the split; with ``val_json`` omitted the
    images of ``train_json`` are split by ``seed`` with ``val_fraction``. Category ids map to
    contiguous labels in ascending id order (taken from ``train_json``)."""

    name = "coco"

    def __init__(self, images: str | Path, train_json: str | Path, val_json: str | Path | None = None,
                 val_images: str | Path | None = None, image_size: int = 128, val_fraction: float = 0.2, mean: float = 0.5,
                 std: float = 0.5, seed: int = 0, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__(image_size, mean, std, val_fraction, seed, batch_size, num_workers)
        self.images = Path(images)
        self.val_images = Path(val_images) if val_images is not None else self.images
        for key, p in (("images", self.images), ("val_images", self.val_images)):
            if not p.is_dir():
                raise ValueError(f"coco: {key} {str(p)!r} is not a directory")
        self.train_json = Path(train_json)
        self.val_json = Path(val_json) if val_json is not None else None
        for key, p in (("train_json", self.train_json), ("val_json", self.val_json)):
            if p is not None and not p.is_file():
                raise ValueError(f"coco: {key} {str(p)!r} is not a file")
        self._train_records, self.category_ids, self.class_names = parse_coco_json(self.train_json)
        if not self.category_ids:
            raise ValueError(f"coco: {self.train_json} lists no categories")
        self.num_classes = len(self.category_ids)

    def _key_root(self) -> Path:
        return self.val_images

    def _resolve(self, records, folder: Path, source: Path):
        index = {c: i for i, c in enumerate(self.category_ids)}
        out = []
        for fname, boxes, cats in records:
            unknown = sorted(set(cats.tolist()) - set(index))
            if unknown:
                raise ValueError(f"coco: {source}: category ids {unknown} are not among {self.train_json}'s categories")
            img = folder / fname
            if not img.is_file():
                raise ValueError(f"coco: {source} names image {fname!r}, not found in {folder}")
            out.append((img, boxes, np.asarray([index[c] for c in cats.tolist()], dtype=np.int64)))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self._resolve(self._train_records, self.images, self.train_json)
        if self.val_json is not None:
            val = self._resolve(parse_coco_json(self.val_json)[0], self.val_images, self.val_json)
        else:
            a, b = _split(len(train), self.val_fraction, self.seed)
            train, val = [train[k] for k in a], [train[k] for k in b]
        self.train_set, self.val_set = self._dataset(train), self._dataset(val)
