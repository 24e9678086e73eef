"""Queue-aware autoscaling: the Triton metrics an HPA scales on, and the adapter rules behind them.

Kubernetes' HPA reads Pods metrics through the custom metrics API; prometheus-adapter serves it
from Prometheus, which scrapes Triton's ``:8002/metrics``. Two metrics are offered per pool:

* ``queueTime`` -> HPA metric ``rtdetr_triton_queue_time_us``: microseconds the average request
  waited in Triton's scheduler queue over the last minute,
  ``increase(nv_inference_queue_duration_us) / (1 + increase(nv_inference_request_success))``
  (the ``1 +`` keeps an idle pod at 0 instead of a division by zero). It grows before latency
  SLOs break: the dynamic batcher queues requests once the GPU is saturated.
* ``pendingRequests`` -> ``nv_inference_pending_request_count`` averaged over a minute: requests
  received and not yet answered.

:func:`adapter_rules` is what prometheus-adapter needs (its ``rules.custom`` value); the Helm
chart's values carry the same text and a unit test keeps them equal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TritonMetric:
    """One metric an HPA may scale a pool on."""

    hpa_name: str
    default_target: str
    series: str
    metrics_query: str
    unit: str


METRICS: dict[str, TritonMetric] = {
    "queueTime": TritonMetric(
        hpa_name="rtdetr_triton_queue_time_us",
        default_target="10000",
        series="nv_inference_queue_duration_us",
        metrics_query=(
            "sum by (<<.GroupBy>>) (increase(nv_inference_queue_duration_us{<<.LabelMatchers>>}"
            "[1m])) / (1 + sum by (<<.GroupBy>>) (increase(nv_inference_request_success"
            "{<<.LabelMatchers>>}[1m])))"
        ),
        unit="microseconds per request",
    ),
    "pendingRequests": TritonMetric(
        hpa_name="nv_inference_pending_request_count",
        default_target="8",
        series="nv_inference_pending_request_count",
        metrics_query=(
            "sum by (<<.GroupBy>>) (avg_over_time(nv_inference_pending_request_count"
            "{<<.LabelMatchers>>}[1m]))"
        ),
        unit="requests",
    ),
}

#: Scale up at once (a queue means frames are late now), down only after 5 calm minutes and
#: by at most one pod a minute (a GPU pod takes a while to load its engine again).
DEFAULT_BEHAVIOR: dict[str, Any] = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        "selectPolicy": "Max",
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        "selectPolicy": "Min",
    },
}


def hpa_metric(metric: str, target: str | int | None) -> dict[str, Any]:
    """The autoscaling/v2 ``metrics[]`` entry for ``metric`` at a per-pod average ``target``."""
    m = METRICS[metric]
    value = str(target) if target is not None else m.default_target
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": m.hpa_name},
            "target": {"type": "AverageValue", "averageValue": value},
        },
    }


def behavior(custom: dict[str, Any] | None) -> dict[str, Any]:
    return copy.deepcopy(custom) if custom else copy.deepcopy(DEFAULT_BEHAVIOR)


def adapter_rules() -> list[dict[str, Any]]:
    """prometheus-adapter custom-metrics rules serving every metric of :data:`METRICS`.

    Triton pods must be scraped with ``namespace`` and ``pod`` labels (the usual Kubernetes
    service-discovery relabeling, or a PodMonitor on the ``metrics`` port).
    """
    rules = []
    for m in METRICS.values():
        rules.append(
            {
                "seriesQuery": f'{m.series}{{namespace!="",pod!=""}}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": f"^{m.series}$", "as": m.hpa_name},
                "metricsQuery": m.metrics_query,
            }
        )
    return rules
