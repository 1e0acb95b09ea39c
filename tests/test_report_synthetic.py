"""A synthetic run directory with planted metric files (the schema of docs/architecture.md), shared by the plot
and report tests, plus checks that the planted files are self-consistent."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gradiend import constants as C

CLASSES = {"3SG": ["he", "she", "it"], "3PL": ["they"]}
PEARSON = 0.87342
PEARSON_CI = (0.85113, 0.89207)
BASE = {"lms": 0.5, "p_3SG_other": 0.1, "p_3PL_other": 0.2}
ALPHAS = (0.001, 0.01, 0.1, 1.0, 10.0)
LMS_RATIO = 0.99
# planted optimum under the LMS floor: strengthen 3SG at h=+1, alpha=1 (p 0.35); 3PL at h=-1, alpha=0.1 (p 0.26)
SELECTED = {"3SG": (1.0, 1.0), "3PL": (-1.0, 0.1)}
TIMINGS = {"data": 3.2, "train": 41.7, "evaluate": 12.05}
DATA_COUNTS = {"3SG": {"train": 800, "validation": 100, "test": 100}, "3PL": {"train": 300, "validation": 40, "test": 35}}

CONFIG_TOML = """name = "synthetic"
[model]
spec = "offline:smollm2-135m"
[data]
texts = "offline:wiki"
[data.classes]
3SG = ["he", "she", "it"]
3PL = ["they"]
"""


def training_rows() -> list[dict]:
    rows = []
    for seed, best_step in ((0, 300), (1, 400)):
        for step in range(0, 501, 50):
            peak = 0.93 - 0.01 * seed
            corr = peak - 0.0005 * abs(step - best_step) - (0.5 if step == 0 else 0)
            rows.append({
                "step": step, "seed": seed, "loss": 1e-3 * np.exp(-step / 200) + 1e-5, "correlation": corr,
                "mean_pos": 0.8 * corr, "mean_neg": -0.7 * corr, "best": step == best_step,
            })
    return rows


def _cell(h: float, alpha: float) -> dict:
    """Planted grid: h=+1 raises P(3SG), h=-1 raises P(3PL); LMS falls with alpha (faster for h=-1)."""
    lms = BASE["lms"] * (1 - (0.004 if h > 0 else 0.02) * alpha ** 1.2)
    push = np.log10(alpha) + 4  # 1 .. 5
    p3sg = BASE["p_3SG_other"] + (0.0625 * push if h > 0 else -0.01 * push)
    p3pl = BASE["p_3PL_other"] + (0.015 * push if h < 0 else -0.02 * push)
    return {"h": h, "alpha": alpha, "is_base": False, "lms": lms, "p_3SG_other": p3sg, "p_3SG_own": 0.9,
            "p_3PL_other": p3pl, "p_3PL_own": 0.8}


def decoder_grid() -> pd.DataFrame:
    rows = [{"h": 0.0, "alpha": 0.0, "is_base": True, **BASE, "p_3SG_own": 0.9, "p_3PL_own": 0.8}]
    rows += [_cell(h, a) for h in (-1.0, 1.0) for a in ALPHAS]
    df = pd.DataFrame(rows)
    df.insert(0, "cell", range(len(df)))
    return df


def decoder_json(useful: bool = True) -> dict:
    grid = decoder_grid().set_index(["h", "alpha"])
    selected = {}
    for cid, (h, alpha) in SELECTED.items():
        cell = grid.loc[(h, alpha)]
        selected[cid] = {
            "h": h, "alpha": alpha, "value": float(cell[f"p_{cid}_other"]), "base_value": BASE[f"p_{cid}_other"],
            "lms": float(cell["lms"]), "base_lms": BASE["lms"], "lms_ratio": float(cell["lms"]) / BASE["lms"],
            "useful": useful, "cell": f"h={h:+g},alpha={alpha:g}", "metric": f"P({cid} words | other rows)",
            "reason": "strongest cell with LMS >= 0.99 x base LMS" if useful else
            "no cell with LMS >= 0.99 x base LMS beats the base model",
        }
    # as the decoder stage writes it when nothing is admissible: the base model, useful false, with the reason
    selected["3SG_weaken"] = {"h": -1.0, "alpha": 0.0, "cell": "base", "metric": "1 - P(3SG words | 3SG rows)",
                              "value": 0.1, "base_value": 0.1, "lms": 0.5, "base_lms": 0.5, "lms_ratio": 1.0,
                              "useful": False, "reason": "no cell keeps LMS >= 0.99 x base LMS"}
    return {"base": BASE, "lms_definition": "1 / (1 + mean next-token NLL)",
            "policy": {"name": "threshold", "lms_ratio": LMS_RATIO}, "selected": selected}


def encodings(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for variant, cls, words, mu, sd in (
        ("pairs", "3SG", ["he", "she", "it"], 0.8, 0.1), ("pairs", "3PL", ["they"], -0.7, 0.15),
        ("neutral_masked", None, [None], 0.05, 0.1), ("neutral_text", None, [None], 0.0, 0.05),
    ):
        enc = np.clip(rng.normal(mu, sd, n), -1, 1)
        label = {"3SG": 1.0, "3PL": -1.0}.get(cls, 0.0)
        parts.append(pd.DataFrame({
            "encoding": enc, "label": label, "class": cls, "word": [words[i % len(words)] for i in range(n)],
            "variant": variant, "split": "test", "sentence_id": np.arange(n),
            "transition": {"3SG": "3SG->3PL", "3PL": "3PL->3SG"}.get(cls), "in_task": cls is not None,
        }))
    return pd.concat(parts, ignore_index=True)


def encoder_json() -> dict:
    ci = list(PEARSON_CI)
    stat = {"value": 0.9, "ci": [0.88, 0.92]}
    return {
        "split": "test", "n_rows": 240, "classes": ["3SG", "3PL"], "pearson": {"value": PEARSON, "ci": ci},
        "spearman": stat, "accuracy_ternary": stat, "accuracy_binary": stat, "cohens_d": {"value": 5.1, "ci": [4.6, 5.6]},
        "auroc": {"value": 0.99, "ci": [0.98, 1.0]},
        "per_class": {c: {"mean": m, "std": 0.1, "q05": m - 0.2, "q25": m - 0.1, "q50": m, "q75": m + 0.1,
                          "q95": m + 0.2, "n": 120} for c, m in (("3SG", 0.8), ("3PL", -0.7))},
        "per_target": {"he": {"mean": 0.82, "n": 40}, "she": {"mean": 0.79, "n": 40}, "it": {"mean": 0.6, "n": 40},
                       "they": {"mean": -0.7, "n": 120}},
        "neutral": {"neutral_masked": {"mean": 0.05, "std": 0.1, "n": 120},
                    "neutral_text": {"mean": 0.0, "std": 0.05, "n": 120}},
    }


def make_run(root: Path, useful: bool = True, full: bool = True) -> Path:
    """Write a run directory; ``full=False`` leaves out everything after training (data + training log only)."""
    run = root / "synthetic"
    (run / C.METRICS_DIR).mkdir(parents=True)
    (run / C.DATA_DIR).mkdir()
    (run / C.CONFIG_FILE).write_text(CONFIG_TOML)
    (run / C.DATA_DIR / C.DATA_META_FILE).write_text(json.dumps({"fingerprint": "abc123", "counts": DATA_COUNTS}))
    metrics = run / C.METRICS_DIR
    (metrics / C.TRAINING_LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in training_rows()))
    (metrics / "timings.json").write_text(json.dumps(TIMINGS))
    if full:
        (metrics / C.ENCODER_METRICS_FILE).write_text(json.dumps(encoder_json()))
        encodings().to_parquet(metrics / C.ENCODINGS_FILE)
        decoder_grid().to_csv(metrics / C.DECODER_GRID_FILE, index=False)
        (metrics / C.DECODER_METRICS_FILE).write_text(json.dumps(decoder_json(useful)))
    return run


@functools.cache
def reported_run() -> Path:
    """A full synthetic run with its report written, made once per test process (read-only for callers).

    A cached function rather than a fixture, so that several test modules share it (drawing is the slow part).
    """
    from gradiend.report import write_report

    root = Path(tempfile.mkdtemp(prefix="gradiend-report-test-"))
    atexit.register(shutil.rmtree, root, True)
    run = make_run(root)
    write_report(run)
    return run


def test_planted_selection_is_the_lms_constrained_optimum() -> None:
    grid = decoder_grid()
    cells = grid[~grid["is_base"]]
    for cid, (h, alpha) in SELECTED.items():
        ok = cells[(cells["h"] == h) & (cells["lms"] >= LMS_RATIO * BASE["lms"])]
        best = ok.loc[ok[f"p_{cid}_other"].idxmax()]
        assert (best["h"], best["alpha"]) == (h, alpha)
        assert best[f"p_{cid}_other"] > BASE[f"p_{cid}_other"]


def test_planted_best_steps_have_the_highest_correlation() -> None:
    df = pd.DataFrame(training_rows())
    for _, rows in df.groupby("seed"):
        assert rows.loc[rows["correlation"].idxmax(), "best"]
        assert rows["best"].sum() == 1
