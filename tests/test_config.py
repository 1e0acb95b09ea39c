"""The experiment configuration: TOML round trip, defaults, validation messages, stage fingerprints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gradiend.config import (
    ExperimentConfig,
    config_from_dict,
    load_config,
    loads_config,
    save_config,
    stage_fingerprint,
)
from gradiend.data import DataConfig
from gradiend.errors import GradiendError

MINIMAL = """
name = "pronouns"
[model]
spec = "offline:smollm2-135m"
[data]
texts = "offline:wiki-en"
[data.classes]
3SG = ["he", "she", "it"]
3PL = ["they"]
[train]
lr = 1e-4
seeds = [0, 1]
"""


def _with(extra_train: str = "", replace: tuple[str, str] | None = None) -> str:
    text = MINIMAL + extra_train
    return text.replace(*replace) if replace else text


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL)
    return path


def test_load_fills_defaults_and_converts_lists(config_file: Path) -> None:
    config = load_config(config_file)
    assert config.model.spec == "offline:smollm2-135m"
    assert config.data.classes == {"3SG": ("he", "she", "it"), "3PL": ("they",)}
    assert config.class_ids == ("3SG", "3PL")  # file order: the first class is the positive one
    assert config.train.lr == 1e-4 and config.train.seeds == (0, 1)
    assert config.train.source == "alternative" and config.eval.lms_ratio == 0.99
    assert config.run_dir == Path("runs/pronouns")


def test_round_trip_is_equal_and_writes_every_default(config_file: Path, tmp_path: Path) -> None:
    config = load_config(config_file)
    text = config.to_toml()
    assert loads_config(text) == config
    assert "eval_every = 20" in text and 'policy = "selected"' in text  # defaults written out
    assert "seeds = [0, 1]" in text  # short arrays stay on one line
    out = save_config(config, tmp_path / "run" / "config.toml")
    assert load_config(out) == config
    assert save_config(load_config(out), tmp_path / "again.toml").read_text() == out.read_text()


def test_round_trip_keeps_optional_values() -> None:
    config = loads_config(_with("steps = 100\npost_prune_topk = 0.25\n"))
    assert config.train.steps == 100 and config.train.post_prune_topk == 0.25
    assert loads_config(config.to_toml()) == config


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(GradiendError, match=r"^unknown key 'lrr' in \[train\]; did you mean 'lr'\?$"):
        loads_config(_with(replace=("lr = 1e-4", "lrr = 1e-4")))


def test_unknown_section_suggests_the_close_one() -> None:
    with pytest.raises(GradiendError, match=r"unknown section 'trian' at the top level; did you mean 'train'\?"):
        loads_config(_with(replace=("[train]", "[trian]")))


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    with pytest.raises(GradiendError, match=r"unknown key 'zzz' in \[model\]; known keys: spec, dtype"):
        loads_config(_with(replace=('spec = "', 'zzz = 1\nspec = "')))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr = 1e-4", 'lr = "fast"', "train.lr must be a number, got string 'fast'"),
        ("seeds = [0, 1]", "seeds = [0, 1.5]", r"train.seeds\[1\] must be an integer, got float 1.5"),
        ("seeds = [0, 1]", "seeds = 3", "train.seeds must be a list, got integer 3"),
        ("lr = 1e-4", 'source = "both"', "train.source must be one of 'factual', 'alternative', 'diff', got 'both'"),
        ("lr = 1e-4", "epochs = true", "train.epochs must be an integer, got boolean True"),
        ('3PL = ["they"]', '3PL = "they"', "data.classes.3PL must be a list, got string 'they'"),
    ],
)
def test_wrong_types_name_the_key_and_the_value(old: str, new: str, message: str) -> None:
    with pytest.raises(GradiendError, match=f"^{message}$"):
        loads_config(_with(replace=(old, new)))


def test_ints_are_accepted_where_numbers_are_expected() -> None:
    assert loads_config(_with(replace=("lr = 1e-4", "lr = 1"))).train.lr == 1.0


@pytest.mark.parametrize(
    ("old", "message"),
    [
        ('spec = "offline:smollm2-135m"', r"missing required key 'spec' in \[model\]; e.g. spec = "),
        ('texts = "offline:wiki-en"', r"\[data\] needs exactly one of texts \(raw text to mine\) and table"),
        ('[data.classes]\n3SG = ["he", "she", "it"]\n3PL = ["they"]', r"\[data\] with texts needs \[data.classes\]"),
    ],
)
def test_missing_required_keys(old: str, message: str) -> None:
    with pytest.raises(GradiendError, match=message):
        loads_config(_with(replace=(old, "")))


def test_missing_model_section() -> None:
    with pytest.raises(GradiendError, match=r"missing required section \[model\] \(e.g. spec = "):
        config_from_dict({"data": {"texts": "x", "classes": {"a": ["a"], "b": ["b"]}}})


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('3PL = ["they"]', "", r"needs at least two classes, got 1: \['3SG'\]"),
        ('3PL = ["they"]', '3PL = ["they", "He"]', r"the word 'He' is in both '3SG' and '3PL'"),
        ('3PL = ["they"]', "3PL = []", r"class '3PL' has no target words"),
        ("seeds = [0, 1]", 'seeds = [0]\n[rewrite]\nstrengthen = ["3S"]', "strengthen names class '3S'"),
        ("seeds = [0, 1]", '[rewrite]\npolicy = "fixed"', 'policy = "fixed" needs alpha > 0'),
    ],
)
def test_cross_section_checks(old: str, new: str, message: str) -> None:
    with pytest.raises(GradiendError, match=message):
        loads_config(_with(replace=(old, new)))


def test_data_options_nest_the_data_stage_config() -> None:
    config = loads_config(MINIMAL + "[data.options]\nseed = 7\nsplit_ratios = [0.5, 0.25, 0.25]\n")
    assert config.data.options == DataConfig(seed=7, split_ratios=(0.5, 0.25, 0.25))
    assert loads_config(config.to_toml()) == config
    with pytest.raises(GradiendError, match=r"unknown key 'sed' in \[data.options\]; did you mean 'seed'\?"):
        loads_config(MINIMAL + "[data.options]\nsed = 7\n")
    with pytest.raises(GradiendError, match=r"^\[data.options\]: split_ratios must be three non-negative"):
        loads_config(MINIMAL + "[data.options]\nsplit_ratios = [0.5, 0.5, 0.5]\n")
    with pytest.raises(GradiendError, match=r"data.options.split_ratios must have 3 entries, got 2"):
        loads_config(MINIMAL + "[data.options]\nsplit_ratios = [0.5, 0.5]\n")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GradiendError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(GradiendError, match="not valid TOML"):
        load_config(bad)


def _changed(config: ExperimentConfig, section: str, **values: object) -> ExperimentConfig:
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})


def test_fingerprints_follow_stage_dependencies(config_file: Path) -> None:
    base = load_config(config_file)
    stages = ("data", "train", "evaluate", "rewrite")
    fp = {s: stage_fingerprint(base, s) for s in stages}
    assert len(set(fp.values())) == 4 and all(len(v) == 16 for v in fp.values())
    assert fp == {s: stage_fingerprint(load_config(config_file), s) for s in stages}  # deterministic

    def changed_stages(config: ExperimentConfig) -> set[str]:
        return {s for s in stages if stage_fingerprint(config, s) != fp[s]}

    assert changed_stages(_changed(base, "data", options=DataConfig(seed=1))) == set(stages)
    assert changed_stages(_changed(base, "gradients", rows_per_gradient=8)) == {"train", "evaluate", "rewrite"}
    assert changed_stages(_changed(base, "train", lr=2e-5)) == {"train", "evaluate", "rewrite"}
    assert changed_stages(_changed(base, "eval", lms_ratio=0.95)) == {"evaluate", "rewrite"}
    assert changed_stages(_changed(base, "rewrite", strengthen=("3SG",))) == {"rewrite"}
    # where a run lives and which device it runs on do not change what it computes
    assert changed_stages(_changed(base, "model", device="cuda")) == set()
    assert changed_stages(dataclasses.replace(base, name="other", output_dir="/tmp")) == set()
    with pytest.raises(GradiendError, match="unknown stage 'plot'"):
        stage_fingerprint(base, "plot")


def test_none_is_written_as_the_word_none_where_it_is_not_the_default(config_file: Path) -> None:
    config = loads_config(MINIMAL + '[data.options]\nneutral_size = "none"\n')
    assert config.data.options.neutral_size is None  # DataConfig: None = all neutral sentences
    text = config.to_toml()
    assert 'neutral_size = "none"' in text and loads_config(text) == config
    assert stage_fingerprint(config, "data") != stage_fingerprint(load_config(config_file), "data")
    with pytest.raises(GradiendError, match="data.options.neutral_size must be an integer, got string 'all'"):
        loads_config(MINIMAL + '[data.options]\nneutral_size = "all"\n')


def test_none_that_toml_cannot_express_is_refused(config_file: Path) -> None:
    config = _changed(load_config(config_file), "data", hf_split=None)
    with pytest.raises(GradiendError, match="data.hf_split is None but its default is not; TOML cannot express"):
        config.to_toml()


def test_eval_section_is_the_evaluation_stage_config() -> None:
    from gradiend.evaluate.decoder import EvalConfig

    config = loads_config(MINIMAL + "[eval]\nalphas = [0.5, 1, 2]\npolicy = \"metric_x_lms\"\n")
    assert config.eval == EvalConfig(alphas=(0.5, 1.0, 2.0), policy="metric_x_lms")
    with pytest.raises(GradiendError, match=r"^\[eval\] lms_ratio must be in \(0, 1\], got 1.5$"):
        loads_config(MINIMAL + "[eval]\nlms_ratio = 1.5\n")


def test_train_section_is_the_training_stage_config() -> None:
    from gradiend.train import TrainConfig

    config = loads_config(MINIMAL)
    assert config.train == TrainConfig(lr=1e-4, seeds=(0, 1))
    with pytest.raises(GradiendError, match=r"^\[train\]: seeds must be a non-empty tuple of distinct ints"):
        loads_config(_with(replace=("seeds = [0, 1]", "seeds = [1, 1]")))


def test_overrides_are_toml_literals_and_validated(config_file: Path) -> None:
    from gradiend.config import apply_overrides

    base = load_config(config_file)
    config = apply_overrides(base, ["train.lr=3e-4", "train.seeds=[4, 5]", "data.options.seed=3", "name=other",
                                    "model.spec=offline:splade-tiny"])
    assert (config.train.lr, config.train.seeds, config.data.options.seed) == (3e-4, (4, 5), 3)
    assert (config.name, config.model.spec) == ("other", "offline:splade-tiny")
    assert base.train.lr == 1e-4  # frozen: the original is unchanged
    with pytest.raises(GradiendError, match=r"unknown key 'lrr' in \[train\]; did you mean 'lr'\?"):
        apply_overrides(base, ["train.lrr=1"])
    with pytest.raises(GradiendError, match="not of the form section.key=value"):
        apply_overrides(base, ["train.lr"])


def test_the_module_docstring_example_loads() -> None:
    import gradiend.config as module

    example = module.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    config = loads_config("\n".join(line.removeprefix("    ") for line in example.splitlines()))
    assert config.model.spec == "offline:smollm2-135m" and config.class_ids == ("3SG", "3PL")


def test_class_constraints_reach_the_feature() -> None:
    """[data.constraints.<class>] sets spaCy constraints on that class; unknown classes and keys are named."""
    from gradiend.pipeline import feature_of

    text = MINIMAL + '[data.constraints.3SG]\npos = "PRON"\nmorph = "Number=Sing|Person=3"\n'
    config = loads_config(text)
    feature = feature_of(config.data)
    assert [(c.id, c.pos, c.morph, c.needs_spacy) for c in feature.classes] == [
        ("3SG", "PRON", "Number=Sing|Person=3", True), ("3PL", None, None, False)]
    assert loads_config(config.to_toml()) == config
    assert config.fingerprint("data") != loads_config(MINIMAL).fingerprint("data")
    with pytest.raises(GradiendError, match=r"\[data.constraints\] names class\(es\) \['3S'\]; classes: 3SG, 3PL"):
        loads_config(MINIMAL + '[data.constraints.3S]\npos = "PRON"\n')
    with pytest.raises(GradiendError, match=r"unknown key 'lemmas' in \[data.constraints.3SG\]; did you mean 'lemma'"):
        loads_config(MINIMAL + "[data.constraints.3SG]\nlemmas = true\n")
