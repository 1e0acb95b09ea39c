"""GRADIENDs through the (stubbed, offline) Hugging Face Hub: push, load back by hub id, identity checks, errors."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import constants

from gradiend.cli import cli
from gradiend.errors import GradiendError
from gradiend.hub import is_hub_id
from gradiend.identity import BaseModelMismatchError, check_base_model
from gradiend.lm.params import select_parameters
from gradiend.model import Gradiend, GradiendMeta, canonical_directions
from gradiend.rewrite import edited, rewrite_model
from hub_stub import online, stub_hub
from test_report_synthetic import make_run


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    yield from stub_hub(tmp_path, monkeypatch)


def tiny_gradiend(lm, name: str = "tiny-bert") -> Gradiend:
    selection = select_parameters(lm.model, ["bert.encoder.layer.0.output.*"])
    meta = GradiendMeta(selection=selection, base_model=name, model_family="masked", classes=("3SG", "3PL"),
                        directions=canonical_directions(("3SG", "3PL")))
    return Gradiend(selection.input_dim, meta=meta, seed=0)


@pytest.fixture
def bert(make_tiny):
    return make_tiny("bert", seed=0)


def _config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


def test_push_then_load_by_hub_id_equals_the_original(hub, monkeypatch, bert, tmp_path: Path) -> None:
    g = tiny_gradiend(bert)
    online(monkeypatch)
    url = g.push_to_hub("org/tiny-gradiend", private=True)
    assert url == "https://huggingface.co/org/tiny-gradiend"
    assert hub.repos == {"org/tiny-gradiend": True}
    assert set(hub.files("org/tiny-gradiend")) == {"README.md", "config.json", "model.safetensors"}

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = Gradiend.from_pretrained("org/tiny-gradiend")
    for name, tensor in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name  # bitwise
    local = g.save_pretrained(tmp_path / "local")
    snapshot = hub.files("org/tiny-gradiend")["config.json"].parent
    assert _config(snapshot) == _config(local)
    assert loaded.selection.names == g.selection.names and loaded.meta.classes == g.meta.classes
    assert str(snapshot).startswith(str(hub.cache))


def test_a_revision_loads_that_commit(hub, monkeypatch, bert, tmp_path: Path) -> None:
    g = tiny_gradiend(bert)
    first = hub.commit("org/g", g.save_pretrained(tmp_path / "v1"))
    with torch.no_grad():
        g.encoder_bias.add_(1.0)
    hub.commit("org/g", g.save_pretrained(tmp_path / "v2"))
    assert torch.equal(Gradiend.from_pretrained("org/g").encoder_bias, g.encoder_bias)
    old = Gradiend.from_pretrained("org/g", revision=first)
    assert torch.equal(old.encoder_bias + 1.0, g.encoder_bias)


def test_the_config_records_the_base_model_identity(bert, tmp_path: Path) -> None:
    config = _config(tiny_gradiend(bert).save_pretrained(tmp_path / "g"))
    ident = config["base_model_identity"]
    assert ident["name"] == "tiny-bert" and re.fullmatch(r"[0-9a-f]{16}", ident["fingerprint"])
    assert ident["total_params"] == sum(p.numel() for p in bert.model.parameters())


def test_applying_to_the_wrong_base_model_fails_naming_both(hub, bert, tiny_gpt2, tmp_path: Path) -> None:
    hub.commit("org/tiny-gradiend", tiny_gradiend(bert).save_pretrained(tmp_path / "g"))
    with pytest.raises(BaseModelMismatchError, match=r"trained on 'tiny-bert'.*applied to 'tiny-gpt2'"):
        Gradiend.from_pretrained("org/tiny-gradiend", base_model=tiny_gpt2)
    g = Gradiend.from_pretrained("org/tiny-gradiend")
    with pytest.raises(BaseModelMismatchError, match="names or shapes differ"), edited(tiny_gpt2, g, 1.0, 0.1):
        pass


def test_same_architecture_other_weights_is_accepted(make_tiny, bert) -> None:
    g = tiny_gradiend(bert)
    other = make_tiny("bert", seed=5)  # e.g. a fine-tune of the base model: same names and shapes
    check_base_model(g, other)
    before = [p.clone() for p in other.model.parameters()]
    with edited(other, g, 1.0, 0.5):
        pass
    assert all(torch.equal(a, b) for a, b in zip(before, other.model.parameters(), strict=True))


def test_another_base_model_name_is_logged_once_not_per_edit(make_tiny, bert, caplog) -> None:
    g = tiny_gradiend(bert, name="tiny-bert-logged-once")
    other = make_tiny("bert", seed=5)
    with caplog.at_level(logging.INFO, logger="gradiend.identity"):
        for alpha in (0.1, 0.2, 0.5):  # as the decoder's cells do
            with edited(other, g, 1.0, alpha):
                pass
    noted = [r for r in caplog.records if "tiny-bert-logged-once" in r.getMessage()]
    assert len(noted) == 1 and "same parameter fingerprint" in noted[0].getMessage()


def test_offline_and_not_cached_is_one_clear_error(hub) -> None:
    with pytest.raises(GradiendError, match=r"Hub repository 'org/missing' is not in the local Hub cache .* HF_HUB_OFFLINE=1"):
        Gradiend.from_pretrained("org/missing")
    assert hub.refused == []  # offline: not even the stub was asked


def test_repository_not_found_is_one_clear_error(hub, monkeypatch) -> None:
    online(monkeypatch)
    with pytest.raises(GradiendError, match=r"Hub repository 'org/missing' not found .*HF_TOKEN"):
        Gradiend.from_pretrained("org/missing")
    assert hub.refused and all(u.startswith("https://huggingface.co/") for u in hub.refused)


def test_push_without_a_token_or_offline_fails_clearly(hub, monkeypatch, bert, tmp_path: Path) -> None:
    g = tiny_gradiend(bert)
    with pytest.raises(GradiendError, match="HF_HUB_OFFLINE=1: unset it"):
        g.push_to_hub("org/x")
    online(monkeypatch)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(GradiendError, match="no Hugging Face token: log in with `hf auth login` or set HF_TOKEN"):
        g.push_to_hub("org/x")
    assert hub.repos == {}


def test_local_paths_win_over_hub_ids(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("org/name") and not is_hub_id("./org/name") and not is_hub_id("a/b/c")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name")


@pytest.fixture
def pushed_run(hub, monkeypatch, tmp_path: Path, make_tiny, tiny_model_dir) -> Path:
    """The synthetic run with a real GRADIEND and a real rewritten model, pushed with `gradiend push`."""
    from gradiend.lm.load import load_model

    lm = load_model(tiny_model_dir)
    run = make_run(tmp_path)
    g = tiny_gradiend(lm, str(tiny_model_dir))
    g.save_pretrained(run / "gradiend")
    rewrite_model(lm, g, 1.0, 1.0, run / "rewritten" / "3SG", None, run / "gradiend")
    online(monkeypatch)
    result = CliRunner().invoke(cli, ["push", str(run), "org/run", "--private", "--with-rewrites"])
    assert result.exit_code == 0, result.output
    assert "pushed https://huggingface.co/org/run-3SG" in result.output
    return run


@pytest.fixture
def tiny_model_dir(tmp_path: Path, make_tiny) -> Path:
    path = tmp_path / "tiny-bert"
    lm = make_tiny("bert", seed=3)
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def test_cli_push_uploads_the_gradiend_and_its_rewrites_with_cards(hub, pushed_run: Path) -> None:
    assert hub.repos == {"org/run": True, "org/run-3SG": True}
    assert {"README.md", "config.json", "model.safetensors"} <= set(hub.files("org/run"))
    rewritten = hub.files("org/run-3SG")
    assert {"README.md", "config.json", "model.safetensors", "gradiend_rewrite.json"} <= set(rewritten)
    assert 'Gradiend.from_pretrained("org/run")' in hub.files("org/run")["README.md"].read_text()
    assert 'AutoModelForMaskedLM.from_pretrained("org/run-3SG")' in rewritten["README.md"].read_text()


def test_cli_apply_rewrites_with_a_gradiend_from_the_hub(hub, monkeypatch, pushed_run: Path, tiny_model_dir,
                                                          tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "applied"
    result = CliRunner().invoke(cli, ["apply", "--gradiend", "org/run", "--strengthen", "3SG", "--alpha", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    applied = dict(AutoModelForMaskedLM.from_pretrained(out).named_parameters())
    expected = dict(AutoModelForMaskedLM.from_pretrained(pushed_run / "rewritten" / "3SG").named_parameters())
    assert all(torch.equal(applied[n], expected[n]) for n in expected)  # same GRADIEND, same h and α
    assert "# `" in (out / "README.md").read_text()
