"""Dice/IoU, Pd/Fa and ROC/AUC, and ``medsr segeval``."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy.stats import rankdata

from medsr.cli import main
from medsr.metrics.seg import Detection, auc, detect, dice, iou, merge_counts, roc_curve, roc_from_counts, score_counts


def test_dice_iou_per_class_and_empty_classes():
    gt = np.array([[1, 1, 0, 2], [1, 0, 0, 2]])
    pred = np.array([[1, 0, 0, 2], [1, 1, 2, 2]])
    # class 1: |P|=3, |G|=3, overlap 2; class 2: |P|=3, |G|=2, overlap 2; class 3 absent from both
    assert dice(pred, gt, [1, 2, 3]) == pytest.approx({1: 4 / 6, 2: 4 / 5, 3: 1.0})
    assert iou(pred, gt, [1, 2, 3], empty_score=0.5) == pytest.approx({1: 2 / 4, 2: 2 / 3, 3: 0.5})
    empty = np.zeros((3, 3), int)
    assert not np.isnan(list(dice(empty, empty, [1]).values())).any()


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_detection_matches_targets_by_centroid_distance():
    shape = (64, 64)
    gt = _disc(shape, (10, 10), 2) | _disc(shape, (40, 40), 2) | _disc(shape, (10, 50), 1)
    near = _disc(shape, (11, 12), 2)          # centroid ~2.2 px from the first target
    far = _disc(shape, (40, 45), 2)           # 5 px from the second target: not a detection
    clutter = np.zeros(shape, bool)
    clutter[60:62, 0:3] = True                # false alarm, 6 pixels
    found = detect(near | far | clutter, gt, distance=3.0)
    assert (found.targets, found.detected) == (3, 1)
    assert found.false_pixels == int(far.sum()) + 6 and found.pixels == 64 * 64
    assert found.pd == pytest.approx(1 / 3) and found.fa == pytest.approx((far.sum() + 6) / 4096)
    assert detect(near | far, gt, distance=6.0).detected == 2
    total = found + detect(gt, gt)
    assert (total.targets, total.detected, total.pixels) == (6, 4, 2 * 4096)


def test_roc_auc_equals_rank_statistic():
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.3
    scores = np.round(np.clip(0.3 * labels + rng.random(2000) * 0.8, 0, 1), 2)  # many ties
    fpr, tpr, thresholds = roc_curve(scores, labels)
    ranks = rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    expected = (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert auc(fpr, tpr) == pytest.approx(expected, abs=1e-12)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) < 0)
    halves = merge_counts([score_counts(scores[:700], labels[:700]), score_counts(scores[700:], labels[700:])])
    assert auc(*roc_from_counts(halves)[:2]) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        roc_curve(scores, np.zeros_like(labels))


def _write_seg(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gts, preds = [], []
    for i in range(3):
        gt = np.zeros((40, 40), np.uint8)
        gt[5:10, 5:10] = 1
        gt[20:26, 20 + i: 26 + i] = 2
        pred = gt.copy()
        pred[5:10, 9:12] = 1
        pred[30:32, 2:4] = 2 * (i % 2)
        Image.fromarray(gt).save(gt_dir / f"c{i}.png")
        Image.fromarray(pred).save(pred_dir / f"c{i}.png")
        gts.append(gt)
        preds.append(pred)
    return pred_dir, gt_dir, preds, gts


def test_segeval_label_maps(tmp_path, capsys):
    pred_dir, gt_dir, preds, gts = _write_seg(tmp_path)
    out = tmp_path / "s.json"
    assert main(["segeval", str(pred_dir), str(gt_dir), "--metrics", "dice,iou,pdfa", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("protocol") and "classes:" in text and "Pd (pooled)" in text
    report = json.loads(out.read_text())
    for item, p, g in zip(report["items"], preds, gts):
        per_class = dice(p, g, [1, 2])
        assert item["dice_1"] == pytest.approx(per_class[1]) and item["dice_2"] == pytest.approx(per_class[2])
        assert item["dice"] == pytest.approx(np.mean(list(per_class.values())))
    assert report["summary"]["dice"]["n"] == 3
    pooled = sum((detect(p > 0, g > 0) for p, g in zip(preds, gts)), start=Detection(0, 0, 0, 0))
    assert report["pooled"]["Pd (pooled)"].startswith(f"{pooled.pd:.6g}")
    assert main(["segeval", str(pred_dir), str(gt_dir), "--classes", "2"]) == 0
    assert "dice_1" not in capsys.readouterr().out


def test_segeval_probability_maps_and_roc(tmp_path, capsys):
    _, gt_dir, _, gts = _write_seg(tmp_path)
    prob_dir = tmp_path / "prob"
    prob_dir.mkdir()
    rng = np.random.default_rng(1)
    probs = [np.clip((g > 0) * 0.6 + rng.random(g.shape) * 0.5, 0, 1).astype(np.float32) for g in gts]
    for i, p in enumerate(probs):
        np.save(prob_dir / f"c{i}.npy", p)
    out = tmp_path / "p.json"
    assert main(["segeval", str(prob_dir), str(gt_dir), "--metrics", "dice,roc", "--threshold", "0.55",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    fpr, tpr, _ = roc_curve(np.concatenate([p.ravel() for p in probs]), np.concatenate([g.ravel() > 0 for g in gts]))
    assert report["pooled"]["AUC (pooled)"] == pytest.approx(auc(fpr, tpr))
    assert report["items"][0]["dice"] == pytest.approx(dice((probs[0] >= 0.55).astype(int), (gts[0] > 0).astype(int),
                                                            [1])[1])
    assert "p >= 0.55" in capsys.readouterr().out


def test_segeval_bad_inputs(tmp_path, capsys):
    pred_dir, gt_dir, _, _ = _write_seg(tmp_path)
    np.save(pred_dir / "c0.npy", np.full((40, 40), 0.5, np.float32))
    (pred_dir / "c0.png").unlink()
    assert main(["segeval", str(pred_dir), str(gt_dir)]) == 2
    assert "mix probability maps and label maps" in capsys.readouterr().err
    np.save(pred_dir / "c0.npy", np.zeros((40, 41), np.uint8))
    assert main(["segeval", str(pred_dir), str(gt_dir)]) == 2
    assert "differs from the reference" in capsys.readouterr().err
    assert main(["segeval", str(pred_dir), str(gt_dir), "--classes", "one"]) == 2
    assert "--classes" in capsys.readouterr().err
