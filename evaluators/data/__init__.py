"""Data modules by name: ``get_datamodule("digits")``, ``"cifar10"``, ``"cifar100"``, ``"imagefolder"``;
super-resolution: ``"skimage-sr"`` (embedded), ``"div2k"``, ``"set5"``, ``"set14"``, ``"b100"``, ``"urban100"``, ``"srfolder"``;
detection: ``"digits-detection"``, ``"voc"``, ``"coco"``."""

from .base import BaseDataModule, ClassificationDataModule, TransformDataset, stratified_split
from .registry import get_datamodule, list_datasets, register_datamodule

# Importing the modules registers them.
from .digits import DigitsDataModule  # noqa: E402
from .cifar import Cifar10DataModule, Cifar100DataModule  # noqa: E402
from .imagefolder import ImageFolderDataModule  # noqa: E402
from .superres import DIV2KDataModule, HRFolderDataModule, SkimageSRDataModule, SuperResDataModule  # noqa: E402
from .detection import DetectionDataModule, DigitsDetectionDataModule, collate_detection  # noqa: E402
from .detection_files import COCODetectionDataModule, VOCDetectionDataModule  # noqa: E402

__all__ = [
    "BaseDataModule",
    "SuperResDataModule",
    "SkimageSRDataModule",
    "DIV2KDataModule",
    "HRFolderDataModule",
    "ClassificationDataModule",
    "TransformDataset",
    "stratified_split",
    "get_datamodule",
    "list_datasets",
    "register_datamodule",
    "DigitsDataModule",
    "Cifar10DataModule",
    "Cifar100DataModule",
    "ImageFolderDataModule",
    "DetectionDataModule",
    "DigitsDetectionDataModule",
    "VOCDetectionDataModule",
    "COCODetectionDataModule",
    "collate_detection",
]
