"""Data modules by name: ``get_datamodule("digits")``, ``"cifar10"``, ``"cifar100"``, ``"imagefolder"``;
super-resolution: ``"skimage-sr"`` (embedded), ``"div2k"``, ``"set5"``, ``"set14"``, ``"b100"``, ``"urban100"``, ``"srfolder"``;
detection: ``"digits-detection"``, ``"voc"``, ``"coco"``; paired translation: ``"skimage-edges"`` (embedded),
``"pairs-folder"`` (pix2pix side-by-side folders).

The registry is light (no Lightning); the built-in modules are imported, and so registered, when
a data set is first built or one of their classes is first used.
"""

from .._lazy import lazy_getattr
from .registry import get_datamodule, list_datasets, register_datamodule

_WHERE = {
    "BaseDataModule": ".base",
    "SuperResDataModule": ".superres",
    "SkimageSRDataModule": ".superres",
    "DIV2KDataModule": ".superres",
    "HRFolderDataModule": ".superres",
    "ClassificationDataModule": ".base",
    "TransformDataset": ".base",
    "stratified_split": ".splits",
    "DigitsDataModule": ".digits",
    "Cifar10DataModule": ".cifar",
    "Cifar100DataModule": ".cifar",
    "ImageFolderDataModule": ".imagefolder",
    "DetectionDataModule": ".detection",
    "DigitsDetectionDataModule": ".detection",
    "collate_detection": ".detection",
    "COCODetectionDataModule": ".detection_files",
    "VOCDetectionDataModule": ".detection_files",
    "TranslationDataModule": ".translation",
    "SkimageEdgesDataModule": ".translation",
    "SideBySideDataModule": ".translation",
}


__getattr__ = lazy_getattr(__name__, _WHERE, globals())


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
    "TranslationDataModule",
    "SkimageEdgesDataModule",
    "SideBySideDataModule",
]
