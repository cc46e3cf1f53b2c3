"""The pure training pipeline and the model's behaviour (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

from iris_services.common.settings import CLASS_NAMES
from iris_services.train import pipeline

CANONICAL = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [6.4, 3.2, 4.5, 1.5],
    "virginica": [6.3, 3.3, 6.0, 2.5],
}


def test_class_names_are_scikit_learns():
    assert tuple(load_iris().target_names) == CLASS_NAMES


def test_split_holds_out_twenty_percent_stratified():
    data = pipeline.load_dataset(seed=7, test_size=0.2)
    assert len(data.y_test) == 30 and len(data.y_train) == 120
    assert sorted(np.bincount(data.y_test)) == [10, 10, 10]


def test_split_rows_do_not_overlap():
    data = pipeline.load_dataset(seed=7)
    train_rows = {tuple(r) for r in data.x_train}
    # Iris has a few duplicate flowers; held-out rows must not be the training rows themselves.
    overlap = sum(tuple(r) in train_rows for r in data.x_test)
    assert overlap <= 1


def test_same_seed_same_params_and_model():
    a, b = pipeline.train(seed=11), pipeline.train(seed=11)
    assert a.params == b.params
    assert a.evaluation.accuracy == b.evaluation.accuracy


def test_params_are_sampled():
    assert len({str(pipeline.sample_params(s)) for s in range(20)}) > 5


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_accuracy_floor(seed):
    assert pipeline.train(seed=seed).evaluation.accuracy >= 0.85


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_canonical_flower_per_class_is_right(seed):
    model = pipeline.train(seed=seed).model
    predicted = model.predict(np.array(list(CANONICAL.values())))
    assert [CLASS_NAMES[i] for i in predicted] == list(CANONICAL)


def test_evaluation_has_per_class_scores_and_confusion():
    ev = pipeline.train(seed=3).evaluation
    assert set(ev.precision) == set(CLASS_NAMES) == set(ev.recall)
    assert sum(map(sum, ev.confusion)) == 30


@pytest.mark.parametrize(
    ("accuracy", "threshold", "champion", "expected"),
    [
        (0.95, 0.9, None, True),
        (0.85, 0.9, None, False),
        (0.9, 0.9, None, True),
        (0.93, 0.9, 0.97, False),
        (0.97, 0.9, 0.97, True),
        (0.99, 1.0, None, False),
    ],
)
def test_gate(accuracy, threshold, champion, expected):
    assert pipeline.is_promotable(accuracy, threshold, champion) is expected


def test_gate_reasons_round_accuracy_for_people():
    from iris_services.common.registry import Champion
    from iris_services.train.publish import _gate

    champion = Champion("iris-classifier", "1", "champion", 0.9666666666666667, 0.0, None, "")
    _, reason = _gate(0.9333333333333333, 0.9, champion)
    assert reason == "accuracy 0.933 is worse than champion v1 (0.967)"
    _, reason = _gate(0.8666666666666667, 0.9, None)
    assert reason == "accuracy 0.867 is below the threshold 0.9"


def test_the_first_plot_of_a_machine_logs_no_font_cache_chatter(tmp_path):
    """matplotlib says "generated new fontManager" at INFO the first time it runs somewhere."""
    import subprocess
    import sys

    code = (
        "from iris_services.common import logs; logs.setup(); "
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
        "plt.figure(); plt.text(0, 0, 'x'); plt.savefig('/dev/null', format='png')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"MPLCONFIGDIR": str(tmp_path / "fresh"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fontManager" not in proc.stdout + proc.stderr
