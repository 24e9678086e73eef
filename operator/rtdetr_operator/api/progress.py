"""``RTDETRTraining.status.trainingProgress``: where a running training is, as its rank 0 says.

Filled from the progress lines of :mod:`rtdetr_spec.progress` (read by
:mod:`rtdetr_operator.training.live`) while the training task runs, and set to 100% when it
succeeds. ``kubectl get rtt`` shows ``epochs``, ``percent`` and ``eta``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from rtdetr_operator.api.meta import ApiModel


class ValidationMetrics(ApiModel):
    """COCO metrics of the latest validation during training."""

    epoch: int = Field(ge=1)
    """Epoch (1-based) after which the model was validated."""
    m_ap: float | None = Field(default=None, alias="mAP")
    """AP@[0.50:0.95] on the validation set."""
    m_ap50: float | None = Field(default=None, alias="mAP50")
    """AP@0.50 on the validation set."""
    per_class_ap50: dict[str, float | None] = Field(default_factory=dict, alias="perClassAP50")
    """AP@0.50 per class name (null for a class absent from the validation set)."""


class TrainingProgress(ApiModel):
    """Live progress of the training task (rank 0's latest progress line)."""

    epoch: int = Field(ge=0)
    """Epochs completed."""
    num_epochs: int = Field(ge=1)
    """Epochs the run is configured for."""
    epochs: str
    """`epoch/numEpochs`, for `kubectl get`."""
    step: int = Field(default=0, ge=0)
    """Optimizer steps done in the current epoch."""
    steps_per_epoch: int = Field(default=0, ge=0)
    """Optimizer steps per epoch (per process)."""
    global_step: int = Field(default=0, ge=0)
    """Optimizer steps done in total."""
    percent: int = Field(ge=0, le=100)
    """Share of the run's optimizer steps done."""
    eta_seconds: int | None = Field(default=None, ge=0)
    """Estimated seconds until the training task ends."""
    eta: str | None = None
    """etaSeconds for people, e.g. `1h05m`."""
    loss: float | None = None
    """Latest training loss."""
    learning_rate: float | None = None
    """Current learning rate."""
    validation: ValidationMetrics | None = None
    """The latest validation."""
    report_time: datetime | None = None
    """When the trainer printed the progress line the status shows."""
    update_time: datetime | None = None
    """When the operator read it."""
