"""Capacity estimates for GPU types the model card did not measure.

A catalog entry may carry ``estimate`` instead of ``streams``/``throughput_ips``: its capacity is
then *scaled* from a measured entry (``scaled_from``) by the ratio of published dense FP16
Tensor Core TFLOPS (``fp16_dense_tflops`` of this GPU over ``reference_fp16_dense_tflops``).
The measured entry's throughput is taken at its lower bound (``30 * streams@30`` or
``15 * streams@15``, whichever is larger, see :mod:`rtdetr_serving.planner`), so an estimate
never rests on more than the table supports. The result fills ``streams.fps30``/``fps15`` with
``floor(T / fps)``, exactly as the model card computes its own rows.

Why TFLOPS and why a low reference: RT-DETR's ResNet-50 + transformer at 640x640 is dominated
by FP16 convolutions and matmuls; the measured rows' images/s per dense TFLOPS range from about
2.2 (L4, H100) to about 4.2 (L40), so scaling from L4, the lowest, errs on the side of fewer
streams per GPU. An estimate is a planning figure until ``rtdetr-serve bench`` or the engine
Job's own timing replaces it; ``capacity()`` reports its source as ``estimate``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.errors import CatalogError


class Estimate(BaseModel):
    """How an entry's capacity was derived when no measurement exists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Catalog name of a measured entry (one with ``streams`` or ``throughput_ips``).
    scaled_from: str
    #: This GPU's published dense (no sparsity) FP16 Tensor Core TFLOPS.
    fp16_dense_tflops: float = Field(gt=0)
    #: The reference entry's published dense FP16 Tensor Core TFLOPS.
    reference_fp16_dense_tflops: float = Field(gt=0)
    #: Where the figures come from (datasheet, vendor page).
    note: str | None = None


def _lower_bound(entry: dict[str, Any]) -> float:
    streams = entry.get("streams") or {}
    return max(
        30.0 * (streams.get("fps30") or 0),
        15.0 * (streams.get("fps15") or 0),
        float(entry.get("throughput_ips") or 0.0),
    )


def estimated_throughput(entry: dict[str, Any], reference: dict[str, Any]) -> float:
    """Images/s of ``entry`` scaled from ``reference`` by the TFLOPS ratio of its estimate."""
    est = Estimate.model_validate(entry["estimate"])
    return _lower_bound(reference) * est.fp16_dense_tflops / est.reference_fp16_dense_tflops


def fill_estimates(entries: dict[str, dict[str, Any]]) -> None:
    """Give every entry with an ``estimate`` and no capacity figure its scaled ``streams``.

    Raises :class:`CatalogError` naming the entry when the reference is unknown, is itself an
    estimate, or has no capacity figure; an entry that gives ``streams`` or ``throughput_ips``
    keeps them (the estimate then only records how they were obtained).
    """
    for name, entry in entries.items():
        if not entry.get("estimate") or _lower_bound(entry) > 0:
            continue
        try:
            est = Estimate.model_validate(entry["estimate"])
        except ValueError as e:
            raise CatalogError(f"GPU catalog entry {name!r}: estimate: {e}") from None
        ref = entries.get(est.scaled_from)
        if ref is None:
            raise CatalogError(
                f"GPU catalog entry {name!r}: estimate.scaled_from {est.scaled_from!r} is not "
                "in the catalog"
            )
        if ref.get("estimate") or _lower_bound(ref) <= 0:
            raise CatalogError(
                f"GPU catalog entry {name!r}: estimate.scaled_from {est.scaled_from!r} must be "
                "a measured entry (streams or throughput_ips, no estimate)"
            )
        t = estimated_throughput(entry, ref)
        entry["streams"] = {"fps30": math.floor(t / 30.0), "fps15": math.floor(t / 15.0)}
