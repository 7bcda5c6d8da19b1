"""Writes tests/reference/lr_find.json: fastai's own `Learner.lr_find` run on fixed loss curves,
for `runner lr-find` (src/train/lr_find.rs) to be compared with.

Each curve is a list of batch losses given in advance. A fastai Learner whose loss function
returns the next of them (plus 0 times the model's output, so there is a gradient) runs the
real `lr_find`: its `LRFinder` callback sets the exponentially growing rate and stops at 4
times the best smoothed loss, its `Recorder` smooths the losses (`AvgSmoothLoss`), and its
`valley` suggests a rate from the recorded curve (without the first tenth and the last five).
The file records, per curve, the range, the losses fed, the rates and smoothed losses fastai
recorded, and the suggested rate and its index; tests/it/lr_find.rs feeds the same losses to
runner's `Recorder` and compares.

    python3 -m venv target/fastaienv && target/fastaienv/bin/pip install fastai
    target/fastaienv/bin/python tests/reference/make_lr_find_reference.py
"""

import json
import math
from pathlib import Path

import fastai
import torch
from fastai.callback.schedule import valley
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import SGD
from torch.utils.data import DataLoader, TensorDataset


def curves():
    """(name, start_lr, end_lr, num_it, losses): deterministic shapes with a ripple."""
    ripple = lambda i: 0.03 * math.sin(1.7 * i)
    # The usual shape: flat, a long descent, then a blow-up that stops the search.
    usual = [2.3 - 1.6 / (1 + math.exp(-(i - 45) / 7)) + 0.02 * math.exp((i - 60) / 4) + ripple(i) for i in range(100)]
    # Diverges early: the search stops long before its 60 steps.
    early = [1.0 - 0.01 * i + ripple(i) if i < 20 else 0.8 * 1.6 ** (i - 20) for i in range(60)]
    # A NaN at step 25: fastai goes on recording NaN, and cuts the curve there.
    nan = [1.5 - 0.03 * i + ripple(i) if i < 25 else float("nan") for i in range(40)]
    # No valley to speak of: noise around a level.
    flat = [1.0 + 0.01 * ((7 * i) % 5) for i in range(30)]
    # Few steps, all going down: the suggestion index is Python's -1, the last point kept.
    short = [3.0 - 0.1 * i for i in range(7)]
    return [
        ("usual", 1e-7, 10.0, 100, usual),
        ("diverges_early", 1e-5, 1.0, 60, early),
        ("nan", 1e-6, 1.0, 40, nan),
        ("flat", 1e-4, 10.0, 30, flat),
        ("short", 1e-3, 1.0, 7, short),
    ]


def run(start_lr, end_lr, num_it, losses):
    """fastai's lr_find on a Learner whose batch losses are `losses`, in order."""
    x = torch.zeros(num_it, 1)
    ds = TensorDataset(x, x)
    dls = DataLoaders(DataLoader(ds, batch_size=1), DataLoader(ds, batch_size=1))
    fed = iter(losses)

    def loss_func(pred, _y):
        return pred.sum() * 0 + torch.tensor(next(fed))

    learn = Learner(dls, torch.nn.Linear(1, 1), loss_func=loss_func, opt_func=SGD)
    with learn.no_bar():
        found = learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it, show_plot=False, suggest_funcs=(valley,))
    lrs = [float(v) for v in learn.recorder.lrs]
    smoothed = [float(v) for v in learn.recorder.losses]
    # The index of the suggestion in the recorded curve: valley's own return is a rate.
    kept_lrs = torch.tensor(lrs[num_it // 10 : -5])
    index = next((i for i, lr in enumerate(kept_lrs.tolist()) if lr == found.valley), None) + num_it // 10
    return lrs, smoothed, float(found.valley), index


def json_number(v):
    return None if math.isnan(v) else v


def main():
    cases = []
    for name, start_lr, end_lr, num_it, losses in curves():
        lrs, smoothed, suggested, index = run(start_lr, end_lr, num_it, losses)
        cases.append(
            {
                "name": name,
                "start_lr": start_lr,
                "end_lr": end_lr,
                "steps": num_it,
                "losses": [json_number(v) for v in losses],
                "learning_rates": lrs,
                "smoothed_losses": [json_number(v) for v in smoothed],
                "suggested_learning_rate": suggested,
                "suggested_index": index,
            }
        )
        print(f"{name}: {len(lrs)} steps recorded, valley at {index} ({suggested:.3e})")
    target = Path(__file__).parent / "lr_find.json"
    versions = {"fastai": fastai.__version__, "torch": torch.__version__}
    target.write_text(json.dumps({"versions": versions, "cases": cases}, indent=1) + "\n")
    print(f"wrote {target} ({len(cases)} cases, {versions})")


if __name__ == "__main__":
    main()
