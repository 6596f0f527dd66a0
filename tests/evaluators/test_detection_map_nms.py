"""COCO mAP on hand-made cases, and our greedy NMS against a brute-force reference."""

from __future__ import annotations

import pytest
import torch

from evaluators.detection.coco_map import COCOMeanAveragePrecision
from supernets.boxes import batched_nms, box_iou, generalized_iou, nms


def _gt():
    return [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]]), "labels": torch.tensor([1, 2])},
            {"boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0]]), "labels": torch.tensor([0])}]


def test_perfect_boxes_give_map_one():
    m = COCOMeanAveragePrecision()
    gt = _gt()
    m.update([{"boxes": t["boxes"], "scores": torch.full((len(t["labels"]),), 0.9), "labels": t["labels"]} for t in gt], gt)
    r = m.compute()
    assert float(r["map"]) == pytest.approx(1.0) and float(r["map_50"]) == pytest.approx(1.0)


def test_one_shifted_box_counts_only_below_its_iou():
    # GT [0,0,10,10], prediction shifted by 1 px: IoU = 90 / 110 = 0.818 -> a hit at IoU thresholds
    # 0.50 .. 0.80 (7 of the 10), a miss at 0.85 .. 0.95: AP = 0.7, AP50 = 1.
    m = COCOMeanAveragePrecision()
    gt = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([3])}]
    m.update([{"boxes": torch.tensor([[1.0, 0.0, 11.0, 10.0]]), "scores": torch.tensor([0.8]), "labels": torch.tensor([3])}], gt)
    r = m.compute()
    assert float(r["map"]) == pytest.approx(0.7) and float(r["map_50"]) == pytest.approx(1.0)
    wrong = COCOMeanAveragePrecision()
    wrong.update([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.8]), "labels": torch.tensor([4])}], gt)
    assert float(wrong.compute()["map"]) == 0.0  # right box, wrong class


def test_no_predictions_scores_zero_and_no_ground_truth_is_minus_one():
    m = COCOMeanAveragePrecision()
    m.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}], _gt()[:1])
    assert float(m.compute()["map"]) == 0.0
    e = COCOMeanAveragePrecision()
    e.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}],
             [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    assert float(e.compute()["map"]) == -1.0


def _reference_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 20 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    assert nms(boxes, scores, 0.4).tolist() == _reference_nms(boxes, scores, 0.4)


def test_batched_nms_keeps_overlapping_boxes_of_other_classes_and_giou():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist()) == [0, 2]
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert float(generalized_iou(a, a)) == pytest.approx(1.0)
    assert float(generalized_iou(a, torch.tensor([[3.0, 0.0, 5.0, 2.0]]))) == pytest.approx(0 - (10 - 8) / 10)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_torchmetrics_map_still_needs_torchvision(backend):
    # why coco_map.py exists: torchmetrics' own class refuses without torchvision, whatever the
    # backend. If this starts failing, switch DetectionModule to torchmetrics' MeanAveragePrecision.
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    from torchmetrics.detection.mean_ap import MeanAveragePrecision

    with pytest.raises(ModuleNotFoundError, match="torchvision"):
        MeanAveragePrecision(backend=backend)
