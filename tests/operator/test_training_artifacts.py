"""What a training's tasks leave reaches ``status.artifacts``: the best model and the pictures."""

from __future__ import annotations

from typing import Any

from rtdetr_operator.training.results import apply_summary
from rtdetr_spec.reporting import TaskSummary


def test_best_model_and_evaluation_pictures_reach_status_artifacts() -> None:
    status: dict[str, Any] = {}
    train = TaskSummary(
        task="train",
        status="SUCCESS",
        epoch=30,
        num_epochs=30,
        metrics={"val_mAP50": 0.8},
        artifacts={
            "checkpoint": "/results/train/model_epoch_029.pth",
            "best_model": "/results/train/model_best.pth",
        },
    )
    assert apply_summary(status, "train", train.to_message()) == (None, None)
    folder = "/results/evaluate"
    pictures = {
        "metrics": f"{folder}/metrics.json",
        "pr_curves": f"{folder}/pr_curves.png",
        "confusion_matrix": f"{folder}/confusion_matrix.png",
        "annotated_images": f"{folder}/annotated_images.png",
    }
    per_class = {f"class_{i}": 0.5 for i in range(7)}
    evaluate = TaskSummary(
        task="evaluate",
        status="SUCCESS",
        metrics={"mAP": 0.5, "mAP50": 0.8, "per_class_AP50": per_class},
        artifacts=pictures,
    )
    assert len(evaluate.to_message().encode()) <= 4096
    assert apply_summary(status, "evaluate", evaluate.to_message()) == (None, None)
    art = status["artifacts"]
    assert art["bestModel"] == "/results/train/model_best.pth"
    assert art["checkpoint"] == "/results/train/model_epoch_029.pth"
    assert art["prCurves"].endswith("pr_curves.png")
    assert art["confusionMatrix"].endswith("confusion_matrix.png")
    assert art["annotatedImages"].endswith("annotated_images.png")
