"""Writes tests/reference/metrics.json: scikit-learn's per-class results on fixed inputs, which
`tests/it/per_class.rs` holds `src/train/per_class.rs` to.

Each case has its inputs (an n x k probability matrix, the true and the predicted classes as
n x k 0/1 matrices, the class names) and what scikit-learn computes from them:
precision_recall_fscore_support per class and averaged (zero_division=0), accuracy_score,
per class roc_curve (drop_intermediate=False), roc_auc_score, precision_recall_curve and
average_precision_score, the headline areas, and calibration_curve (10 uniform bins) with the
expected calibration error.

Cases: two classes (one sigmoid unit's [1 - p, p]) with tied scores and scores on the bin
edges; ten classes (as Fashion-MNIST) with ties and one class never predicted; four classes
with one absent from both the truth and the predictions (no curve); three classes with
several true classes per row (multi-label, predictions p > 0.5).

Run from the repository root (see tests/reference/README.md):

    target/sklearnenv/bin/python tests/reference/make_metrics_reference.py
"""

import json
import math
import platform
import re
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

OUT = Path(__file__).resolve().parent / "metrics.json"
BINS = 10


def floats(a):
    """A list of Python floats, with +inf (a curve's first threshold) as None: JSON has no inf."""
    return [None if math.isinf(v) else float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def one_hot(labels, k):
    out = np.zeros((len(labels), k), dtype=np.int64)
    out[np.arange(len(labels)), labels] = 1
    return out


def reliability(confidence, hit):
    """calibration_curve's nonempty bins, their counts (binned as it bins), and the ECE."""
    prob_true, prob_pred = calibration_curve(hit, confidence, n_bins=BINS, strategy="uniform")
    edges = np.linspace(0.0, 1.0, BINS + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(ids, minlength=BINS)
    nonzero = counts[counts > 0]
    ece = float(np.sum(nonzero / len(confidence) * np.abs(prob_true - prob_pred)))
    return {
        "counts": [int(c) for c in counts],
        "frequency": floats(prob_true),
        "mean_confidence": floats(prob_pred),
        "ece": ece,
    }


def case(name, probabilities, truth, predicted, single_label):
    """Everything scikit-learn says about one case. `truth` and `predicted` are n x k 0/1."""
    p = np.asarray(probabilities, dtype=np.float64)
    n, k = p.shape
    names = [f"class_{i}" for i in range(k)]
    if single_label:
        # The ordinary path: class labels, every class listed.
        y, yhat = truth.argmax(axis=1), predicted.argmax(axis=1)
        prfs = lambda average: precision_recall_fscore_support(
            y, yhat, labels=list(range(k)), average=average, zero_division=0
        )
        accuracy = accuracy_score(y, yhat)
    else:
        prfs = lambda average: precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        accuracy = accuracy_score(truth, predicted)  # subset accuracy
    precision, recall, f1, support = prfs(None)
    classes = []
    for c in range(k):
        t, s = truth[:, c], p[:, c]
        positives, negatives = int(t.sum()), int(n - t.sum())
        entry = {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1_score": float(f1[c]),
            "support": int(support[c]),
            "roc": None,
            "roc_auc": None,
            "precision_recall": None,
            "average_precision": None,
        }
        if positives and negatives:
            fpr, tpr, thr = roc_curve(t, s, drop_intermediate=False)
            entry["roc"] = {"fpr": floats(fpr), "tpr": floats(tpr), "threshold": floats(thr)}
            entry["roc_auc"] = float(roc_auc_score(t, s))
        if positives:
            prec, rec, thr = precision_recall_curve(t, s)
            # Reversed into runner's order: recall 0 (precision 1) first, thresholds descending.
            entry["precision_recall"] = {
                "precision": floats(prec[::-1]),
                "recall": floats(rec[::-1]),
                "threshold": [None] + floats(thr[::-1]),
            }
            entry["average_precision"] = float(average_precision_score(t, s))
        classes.append(entry)

    def mean_area(key, weighted):
        present = [(c[key], c["support"] if weighted else 1) for c in classes if c[key] is not None]
        if not present:
            return None
        return sum(v * w for v, w in present) / sum(w for _, w in present)

    every_class_has_curves = all(c["roc_auc"] is not None for c in classes)
    averages = {}
    for average in ["macro", "weighted"]:
        pr, rc, f, _ = prfs(average)
        entry = {"precision": float(pr), "recall": float(rc), "f1_score": float(f)}
        if every_class_has_curves:
            # scikit-learn's own averages (one-vs-rest over the indicator matrix).
            entry["roc_auc"] = float(roc_auc_score(truth, p, average=average))
            entry["average_precision"] = float(average_precision_score(truth, p, average=average))
        else:
            # scikit-learn refuses a class without positives; runner averages the others.
            entry["roc_auc"] = mean_area("roc_auc", average == "weighted")
            entry["average_precision"] = mean_area("average_precision", average == "weighted")
        averages[average] = entry

    if k == 2:
        auc, pr_auc = classes[1]["roc_auc"], classes[1]["average_precision"]
        calibration = reliability(p[:, 1], truth[:, 1])
        calibration["confidence"] = "positive_class"
    else:
        auc, pr_auc = averages["macro"]["roc_auc"], averages["macro"]["average_precision"]
        top = p.argmax(axis=1)
        calibration = reliability(p[np.arange(n), top], truth[np.arange(n), top])
        calibration["confidence"] = "top_label"
    return {
        "name": name,
        "names": names,
        "probabilities": [floats(row) for row in p],
        "truth": truth.astype(bool).tolist(),
        "predicted": predicted.astype(bool).tolist(),
        "expected": {
            "classes": classes,
            "macro_avg": averages["macro"],
            "weighted_avg": averages["weighted"],
            "accuracy": float(accuracy),
            "auc": auc,
            "pr_auc": pr_auc,
            "calibration": calibration,
        },
    }


def binary(rng):
    """One sigmoid unit: p on a grid of 0.05 (ties, and values on the bin edges such as 0.3
    and 0.1, which fall in the bin below), the truth drawn from p."""
    p = np.round(rng.uniform(0, 1, 60) * 20) / 20
    p[:4] = [0.1, 0.3, 0.7, 1.0]
    y = (rng.uniform(0, 1, 60) < p).astype(np.int64)
    probabilities = np.stack([1.0 - p, p], axis=1)
    predicted = (p > 0.5).astype(np.int64)
    return case("binary_ties", probabilities, one_hot(y, 2), one_hot(predicted, 2), True)


def ten_classes(rng):
    """Ten classes, softmax rows rounded to 2 places (many ties in every column), class 9
    damped so that it is never the arg-max (absent from the predictions)."""
    logits = rng.normal(0, 1.5, (300, 10))
    logits[:, 9] -= 4.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = np.round(p, 2)
    y = np.array([rng.choice(10, p=row / row.sum()) if row.sum() > 0 else 0 for row in p])
    y[:3] = 9  # class 9 has positives, so its curves exist
    predicted = p.argmax(axis=1)
    assert not (predicted == 9).any()
    return case("ten_classes", p, one_hot(y, 10), one_hot(predicted, 10), True)


def absent_class(rng):
    """Four classes, the last never true and never predicted: no curve, averages of the rest."""
    logits = rng.normal(0, 1, (40, 4))
    logits[:, 3] -= 5.0
    p = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 3)
    y = rng.integers(0, 3, 40)
    predicted = p.argmax(axis=1)
    assert not (predicted == 3).any()
    return case("absent_class", p, one_hot(y, 4), one_hot(predicted, 4), True)


def multi_label(rng):
    """Three independent labels per row (multi-label), predicted where p > 0.5."""
    p = np.round(rng.uniform(0, 1, (50, 3)), 2)
    truth = (rng.uniform(0, 1, (50, 3)) < p).astype(np.int64)
    predicted = (p > 0.5).astype(np.int64)
    return case("multi_label", p, truth, predicted, False)


def main():
    rng = np.random.default_rng(20260)
    cases = [binary(rng), ten_classes(rng), absent_class(rng), multi_label(rng)]
    out = {
        "written_by": "tests/reference/make_metrics_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "cases": cases,
    }
    text = json.dumps(out, indent=1, allow_nan=False)
    # Lists of numbers (rows, curves) on one line each, so the file reads as a table.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
