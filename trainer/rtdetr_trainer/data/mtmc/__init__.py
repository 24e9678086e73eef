"""MTMC scene conversion (NVIDIA PhysicalAI-SmartSpaces): videos + ground truth -> H5 + COCO."""

from rtdetr_trainer.data.mtmc.annotations import BoxFilters
from rtdetr_trainer.data.mtmc.classes import ClassMapping, parse_class_map
from rtdetr_trainer.data.mtmc.convert import ConversionReport, MtmcOptions, convert_mtmc
from rtdetr_trainer.data.mtmc.splits import SplitPlan, parse_split

__all__ = [
    "BoxFilters",
    "ClassMapping",
    "ConversionReport",
    "MtmcOptions",
    "SplitPlan",
    "convert_mtmc",
    "parse_class_map",
    "parse_split",
]
