"""The bad-input catalogue as data: every row is one bad input, the command that meets it, and what must happen.

``tests/test_error_catalogue.py`` runs every row through the real CLI in-process (``gradiend.cli.main``) or the
Python API, and ``tools/errors_doc.py`` writes ``docs/errors.md`` from it. Placeholders in ``call``:
``{tmp}`` the case's scratch directory, ``{model}`` a tiny BERT model directory, ``{run}`` a copy of a finished
tiny run, ``{data}`` a copy of its data directory. ``setup`` builds the bad input under ``{tmp}``; ``patch``
names a library function replaced for the call (``enospc``: raises OSError(ENOSPC), as a full disk does;
``no-module``: the import of that optional module fails). ``absent`` are paths that must not exist afterwards
(nothing half-written that a later command would take for finished).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

API_EXIT = "raises GradiendError"
CLASSES = ("--class", "3SG=he,she", "--class", "3PL=they")
DATA_OUT = ("--out", "{tmp}/out")


@dataclass(frozen=True)
class Case:
    """One bad input: id, group, what it is (for the docs), the call, the expected message fragment and exit code."""

    id: str
    group: str
    input: str
    call: tuple[str, ...]
    fragment: str
    exit_code: int | str = 2
    setup: Callable[[Path], None] | None = None
    absent: tuple[str, ...] = ()
    patch: tuple[str, str] | None = None
    env: tuple[tuple[str, str], ...] = ()


def _from_pretrained(path: str) -> None:
    from gradiend.model import Gradiend

    Gradiend.from_pretrained(path)


def _load_data(path: str) -> None:
    from gradiend.data import load_data

    load_data(path)


def _load_config(path: str) -> None:
    from gradiend.config import load_config

    load_config(path)


#: the Python API calls a case may name as ``call[0]`` (with ``exit_code = API_EXIT``)
API: dict[str, Callable[..., None]] = {
    "Gradiend.from_pretrained": _from_pretrained, "load_data": _load_data, "load_config": _load_config,
}


# --- builders of bad inputs ---------------------------------------------------------------------------------


def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return build


def edit_json(rel: str, **changes) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        path = tmp / rel
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return build


def truncate(rel: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        path = tmp / rel
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return build


def flip(rel: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        data = bytearray((tmp / rel).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp / rel).write_bytes(bytes(data))
    return build


def delete(rel: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        import shutil

        path = tmp / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return build


def both(*builders: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        for b in builders:
            b(tmp)
    return build


def config(body: str, name: str = "c.toml") -> Callable[[Path], None]:
    """A run configuration over the tiny model and a small text file, plus ``body`` (extra TOML)."""
    head = ('name = "r"\noutput_dir = "{tmp}/runs"\n[model]\nspec = "{model}"\n[data]\ntexts = "{tmp}/t.txt"\n'
            '[data.classes]\n3SG = ["he", "she"]\n3PL = ["they"]\n')
    def build(tmp: Path) -> None:
        write("t.txt", "He said so.\nThey left early.\n")(tmp)
        (tmp / name).write_text(head + body)
    return build


def run_cmd(*extra: str) -> tuple[str, ...]:
    return ("run", "{tmp}/c.toml", *extra)


def hf_model(kind: str, rel: str) -> Callable[[Path], None]:
    """A tiny model directory beside the base one: ``headless`` (BertModel), ``classifier``
    (BertForSequenceClassification), ``no-mask`` (tokenizer without a mask token), ``smaller`` (another base)."""
    def build(tmp: Path) -> None:
        import shutil

        from transformers import (
            AutoTokenizer,
            BertConfig,
            BertForMaskedLM,
            BertForSequenceClassification,
            BertModel,
        )

        base, out = tmp / "base-model", tmp / rel
        config = BertConfig.from_pretrained(base)
        if kind == "no-mask":
            shutil.copytree(base, out)
            for name in ("tokenizer_config.json", "special_tokens_map.json"):
                if (out / name).is_file():
                    edit_json(f"{rel}/{name}", mask_token=None)(tmp)
            return
        if kind == "smaller":
            config.hidden_size, config.intermediate_size = 16, 32
        model = {"headless": BertModel, "classifier": BertForSequenceClassification}.get(kind, BertForMaskedLM)(config)
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return build


def set_run_model(rel: str) -> Callable[[Path], None]:
    """Point the copied run's config.toml at another model directory."""
    def build(tmp: Path) -> None:
        path = tmp / "run" / "config.toml"
        text = path.read_text()
        start = text.index('spec = "') + len('spec = "')
        path.write_text(text[:start] + str(tmp / rel) + text[text.index('"', start):])
    return build


BAD_BYTES = b"\xff\xfe\xfa not text \x80\x81\n"
HEAD_LESS = "head-less"

# --- the catalogue ------------------------------------------------------------------------------------------

CASES: tuple[Case, ...] = (
    # corpora
    Case("corpus-empty", "corpora", "an empty .txt corpus", ("data", "--texts", "{tmp}/t.txt", *CLASSES, *DATA_OUT),
         "the corpus is empty", setup=write("t.txt", ""), absent=("out",)),
    Case("corpus-undecodable-txt", "corpora", "a .txt corpus whose bytes are not UTF-8 text",
         ("data", "--texts", "{tmp}/t.txt", *CLASSES, *DATA_OUT), "is not UTF-8 text",
         setup=write("t.txt", BAD_BYTES), absent=("out",)),
    Case("corpus-undecodable-csv", "corpora", "a .csv corpus whose bytes are not UTF-8 text",
         ("data", "--texts", "{tmp}/t.csv", *CLASSES, *DATA_OUT), "is not UTF-8 text",
         setup=write("t.csv", b"text\n" + BAD_BYTES), absent=("out",)),
    Case("corpus-undecodable-jsonl", "corpora", "a .jsonl corpus whose bytes are not UTF-8 text",
         ("data", "--texts", "{tmp}/t.jsonl", *CLASSES, *DATA_OUT), "is not UTF-8 text",
         setup=write("t.jsonl", BAD_BYTES), absent=("out",)),
    Case("corpus-wrong-column", "corpora", "a .csv corpus without the text column",
         ("data", "--texts", "{tmp}/t.csv", *CLASSES, *DATA_OUT), "has no column 'text'",
         setup=write("t.csv", "body\nHe said so.\n"), absent=("out",)),
    Case("corpus-malformed-jsonl", "corpora", "a .jsonl corpus with a line that is not JSON",
         ("data", "--texts", "{tmp}/t.jsonl", *CLASSES, *DATA_OUT), "cannot be read as JSON lines",
         setup=write("t.jsonl", '{"text": "He said so."}\n{"text": "They left\n'), absent=("out",)),
    Case("corpus-malformed-csv", "corpora", "a .csv corpus with a row of too many fields",
         ("data", "--texts", "{tmp}/t.csv", *CLASSES, *DATA_OUT), "cannot be read as CSV",
         setup=write("t.csv", "text\nHe said so.\na,b,c\n"), absent=("out",)),
    Case("corpus-missing-file", "corpora", "a corpus path that does not exist",
         ("data", "--texts", "{tmp}/none.txt", *CLASSES, *DATA_OUT), "does not exist", absent=("out",)),
    Case("corpus-unsupported-type", "corpora", "a corpus file of an unsupported type (.docx)",
         ("data", "--texts", "{tmp}/t.docx", *CLASSES, *DATA_OUT), "unsupported text file type",
         setup=write("t.docx", "He said so."), absent=("out",)),
    Case("corpus-invalid-json", "corpora", "a .json corpus that is not valid JSON",
         ("data", "--texts", "{tmp}/t.json", *CLASSES, *DATA_OUT), "is not valid JSON",
         setup=write("t.json", '{"A": {"extract": "He'), absent=("out",)),
    Case("corpus-json-not-wiki", "corpora", "a .json corpus that is a list, not {title: {extract}}",
         ("data", "--texts", "{tmp}/t.json", *CLASSES, *DATA_OUT), "expected a JSON object",
         setup=write("t.json", '["He said so."]'), absent=("out",)),
    Case("corpus-hub-offline", "corpora", "a Hugging Face dataset id while HF_HUB_OFFLINE=1",
         ("data", "--texts", "someone/no-such-dataset", *CLASSES, *DATA_OUT), "offline",
         env=(("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1")), absent=("out",)),
    Case("corpus-no-matches", "corpora", "a corpus in which no target word occurs",
         ("data", "--texts", "{tmp}/t.txt", *CLASSES, *DATA_OUT), "matched nothing",
         setup=write("t.txt", "A cat sat on the mat.\nThe dog barked.\n"), absent=("out",)),
    Case("table-missing-columns", "corpora", "a --table file without the masked/factual columns",
         ("data", "--table", "{tmp}/t.csv", *DATA_OUT), "masked", setup=write("t.csv", "text\nHe said so.\n"),
         absent=("out",)),
    # classes and constraints
    Case("class-only-one", "classes", "a single --class", ("data", "--texts", "{tmp}/t.txt", "--class", "3SG=he",
         *DATA_OUT), "needs at least two --class", setup=write("t.txt", "He said so.\n"), absent=("out",)),
    Case("class-bad-syntax", "classes", "a --class without ID=", ("data", "--texts", "{tmp}/t.txt", "--class", "3SG",
         "--class", "3PL=they", *DATA_OUT), "must look like ID=word", setup=write("t.txt", "He said.\n"),
         absent=("out",)),
    Case("class-duplicate-id", "classes", "two classes with the same id", ("data", "--texts", "{tmp}/t.txt",
         "--class", "A=he", "--class", "A=they", *DATA_OUT), "'A'", setup=write("t.txt", "He said.\n"),
         absent=("out",)),
    Case("class-shared-word", "classes", "a word in two classes without constraints to tell them apart",
         ("data", "--texts", "{tmp}/t.txt", "--class", "A=he,they", "--class", "B=they", *DATA_OUT), "'they'",
         setup=write("t.txt", "He said.\n"), absent=("out",)),
    Case("class-no-words", "classes", "a class with no target words", ("data", "--texts", "{tmp}/t.txt",
         "--class", "A=", "--class", "B=they", *DATA_OUT), "'A'", setup=write("t.txt", "He said.\n"),
         absent=("out",)),
    Case("constraint-bad-key", "classes", "a --where constraint with an unknown key",
         ("data", "--texts", "{tmp}/t.txt", *CLASSES, "--where", "3SG:color=red", *DATA_OUT),
         "expected ID:KEY=VALUE", setup=write("t.txt", "He said.\n"), absent=("out",)),
    Case("constraint-unknown-class", "classes", "a --where constraint on a class that is not given",
         ("data", "--texts", "{tmp}/t.txt", *CLASSES, "--where", "1SG:pos=PRON", *DATA_OUT),
         "expected ID:KEY=VALUE", setup=write("t.txt", "He said.\n"), absent=("out",)),
    Case("task-unknown-class", "classes", "train --positive naming a class the data set does not have",
         ("train", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/out", "--positive", "1SG",
          "--negative", "3PL"), "1SG", absent=("out/gradiend",)),
    Case("splits-malformed", "classes", "--splits with two ratios", ("data", "--texts", "{tmp}/t.txt", *CLASSES,
         "--splits", "0.5,0.5", *DATA_OUT), "expected three comma-separated fractions",
         setup=write("t.txt", "He said.\n"), absent=("out",)),
    # configs
    Case("config-unknown-key", "configs", "a misspelt key ([train] lrr)", run_cmd(), "did you mean",
         setup=config("[train]\nlrr = 1e-3\n"), absent=("runs",)),
    Case("config-unknown-section", "configs", "a misspelt section ([trian])", run_cmd(), "trian",
         setup=config("[trian]\nlr = 1e-3\n"), absent=("runs",)),
    Case("config-wrong-type", "configs", "a string where an int belongs ([train] steps = \"many\")", run_cmd(),
         "steps", setup=config('[train]\nsteps = "many"\n'), absent=("runs",)),
    Case("config-contradictory", "configs", "post_prune_steps without post_prune_topk", run_cmd(),
         "needs post_prune_topk", setup=config("[train]\npost_prune_steps = 2\n"), absent=("runs",)),
    Case("config-out-of-range", "configs", "a negative learning rate", run_cmd(), "lr must be positive",
         setup=config("[train]\nlr = -1.0\n"), absent=("runs",)),
    Case("config-checkpoint-zero", "configs", "[train.checkpoint] steps = 0", run_cmd(), "steps must be ≥ 1",
         setup=config("[train.checkpoint]\nsteps = 0\n"), absent=("runs",)),
    Case("config-split-ratios", "configs", "split ratios that do not sum to 1", run_cmd(), "split",
         setup=config("[data.options]\nsplit_ratios = [0.5, 0.5, 0.5]\n"), absent=("runs",)),
    Case("config-validation-dtype", "configs", "an unknown [gradients] validation_dtype", run_cmd(),
         "validation_dtype must be one of", setup=config('[gradients]\nvalidation_dtype = "int8"\n'),
         absent=("runs",)),
    Case("config-not-toml", "configs", "a config file that is not TOML", run_cmd(), "not valid TOML",
         setup=write("c.toml", "name = [\n"), absent=("runs",)),
    Case("config-missing", "configs", "a config path that does not exist", ("run", "{tmp}/none.toml"),
         "does not exist"),
    Case("config-no-model", "configs", "a config without [model] spec", run_cmd(), "spec",
         setup=write("c.toml", '[data]\ntexts = "offline:wiki-en"\n[data.classes]\nA = ["he"]\nB = ["they"]\n'),
         absent=("runs",)),
    Case("config-bad-override", "configs", "--set without =", run_cmd("--set", "train.lr"),
         "is not of the form section.key=value", setup=config(""), absent=("runs",)),
    Case("config-api-wrong-type", "configs", "load_config of a list where a table belongs",
         ("load_config", "{tmp}/x.toml"), "must be a table", API_EXIT, setup=write("x.toml", "model = [1, 2]\n")),
    # models
    Case("model-not-a-model", "models", "a directory that is not a model", ("train", "--model", "{tmp}/m",
         "--data", "{data}", "--out", "{tmp}/out"), "is not a Hugging Face model directory",
         setup=write("m/README.md", "hello"), absent=("out/gradiend",)),
    Case("model-a-file", "models", "a text file given as the model", ("train", "--model", "{tmp}/m.txt",
         "--data", "{data}", "--out", "{tmp}/out"), "is a file, not a model", setup=write("m.txt", "x"),
         absent=("out/gradiend",)),
    Case("model-no-head", "models", "a model without a language-modelling head (BertModel)",
         ("train", "--model", "{tmp}/headless", "--data", "{data}", "--out", "{tmp}/out"),
         "has no language-modelling head", setup=hf_model("headless", "headless"), absent=("out/gradiend",)),
    Case("model-wrong-family", "models", "a sequence classifier instead of a language model",
         ("train", "--model", "{tmp}/clf", "--data", "{data}", "--out", "{tmp}/out"),
         "has no language-modelling head", setup=hf_model("classifier", "clf"), absent=("out/gradiend",)),
    Case("model-tokenizer-no-mask", "models", "a masked LM whose tokenizer has no mask token",
         ("train", "--model", "{tmp}/nomask", "--data", "{data}", "--out", "{tmp}/out"),
         "tokenizer without a mask token", setup=hf_model("no-mask", "nomask"), absent=("out/gradiend",)),
    Case("model-hub-offline", "models", "a hub id while HF_HUB_OFFLINE=1", ("train", "--model",
         "someone/no-such-model", "--data", "{data}", "--out", "{tmp}/out"), "cannot load model",
         env=(("HF_HUB_OFFLINE", "1"),), absent=("out/gradiend",)),
    Case("model-gguf-missing", "models", "a .gguf path that does not exist", ("train", "--model", "{tmp}/m.gguf",
         "--data", "{data}", "--out", "{tmp}/out"), "does not exist", absent=("out/gradiend",)),
    Case("model-gguf-corrupt", "models", "a .gguf file of junk bytes", ("train", "--model", "{tmp}/m.gguf",
         "--data", "{data}", "--out", "{tmp}/out"), "m.gguf", setup=write("m.gguf", b"GGUF junk" * 10),
         absent=("out/gradiend",)),
    Case("model-text-asset", "models", "an offline text asset given as the model", ("train", "--model",
         "offline:wiki-en", "--data", "{data}", "--out", "{tmp}/out"), "is a text asset, not a model",
         absent=("out/gradiend",)),
    # run and GRADIEND directories
    Case("run-missing", "runs", "a run directory that does not exist", ("evaluate", "{tmp}/nope"), "does not exist"),
    Case("run-not-a-run", "runs", "a directory that is not a run", ("evaluate", "{tmp}/empty"),
         "is not a gradiend run directory", setup=write("empty/x.txt", "")),
    Case("run-damaged-gradiend-deleted", "runs", "rewrite on a run whose GRADIEND was deleted",
         ("rewrite", "{run}", "--h", "1", "--alpha", "0.1"), "gradiend/config.json is missing",
         setup=delete("run/gradiend"), absent=("run/rewritten/h+1_alpha0.1",)),
    Case("run-damaged-weights-truncated", "runs", "rewrite on a run whose GRADIEND weights were cut short",
         ("rewrite", "{run}", "--h", "1", "--alpha", "0.1"), "model.safetensors is damaged",
         setup=truncate("run/gradiend/model.safetensors"), absent=("run/rewritten/h+1_alpha0.1",)),
    Case("run-damaged-decoder-json", "runs", "report on a run whose decoder.json was changed",
         ("report", "{run}"), "decoder.json is damaged", setup=flip("run/metrics/decoder.json")),
    Case("run-damaged-stages-json", "runs", "report on a run whose metrics/stages.json is not JSON",
         ("report", "{run}"), "stages.json is not valid JSON", setup=write("run/metrics/stages.json", "{")),
    Case("run-other-base-model", "runs", "rewrite with a GRADIEND of another base model",
         ("rewrite", "{run}", "--h", "1", "--alpha", "0.1"), "the selected parameters' names or shapes differ",
         setup=both(hf_model("smaller", "other"), set_run_model("other")), absent=("run/rewritten/h+1_alpha0.1",)),
    Case("compare-other-base-model", "runs", "compare GRADIENDs of different base models",
         ("compare", "{run}", "{tmp}/g2", "--no-cross-encoding", "--out", "{tmp}/cmp"), "different base models",
         setup=both(lambda t: __import__("shutil").copytree(t / "run/gradiend", t / "g2"),
                    edit_json("g2/config.json", base_model="another-model")), absent=("cmp",)),
    Case("data-dir-truncated", "runs", "a data directory whose pairs.parquet was cut short",
         ("train", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/out"), "pairs.parquet is damaged",
         setup=truncate("data/pairs.parquet"), absent=("out/gradiend",)),
    Case("data-dir-future-format", "runs", "a data directory of a newer format version",
         ("train", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/out"), "newer than this gradiend reads",
         setup=edit_json("data/data.json", format_version=99), absent=("out/gradiend",)),
    Case("data-dir-missing-file", "runs", "a data directory without neutral.parquet",
         ("train", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/out"), "missing neutral.parquet",
         setup=delete("data/neutral.parquet"), absent=("out/gradiend",)),
    Case("gradiend-not-a-gradiend", "runs", "Gradiend.from_pretrained of a directory without config.json",
         ("Gradiend.from_pretrained", "{tmp}/empty"), "is not a GRADIEND directory", API_EXIT,
         setup=write("empty/x.txt", "")),
    Case("gradiend-truncated", "runs", "Gradiend.from_pretrained of cut-short weights",
         ("Gradiend.from_pretrained", "{run}/gradiend"), "bytes where", API_EXIT,
         setup=truncate("run/gradiend/model.safetensors")),
    Case("gradiend-corrupt-config", "runs", "Gradiend.from_pretrained with a cut-short config.json",
         ("Gradiend.from_pretrained", "{run}/gradiend"), "is not valid JSON", API_EXIT,
         setup=truncate("run/gradiend/config.json")),
    Case("gradiend-format-future", "runs", "a GRADIEND of a newer format version",
         ("Gradiend.from_pretrained", "{run}/gradiend"), "newer than this gradiend reads", API_EXIT,
         setup=edit_json("run/gradiend/config.json", format_version=99)),
    Case("gradiend-format-past", "runs", "a GRADIEND of a format version older than supported",
         ("Gradiend.from_pretrained", "{run}/gradiend"), "older than this gradiend reads", API_EXIT,
         setup=edit_json("run/gradiend/config.json", format_version=0)),
    # the environment
    Case("env-output-not-writable", "environment", "--out below a regular file (cannot be created)",
         ("data", "--texts", "offline:wiki-en", *CLASSES, "--max-documents", "400", "--out", "{tmp}/f.txt/out"),
         "cannot write", 1, setup=write("f.txt", "x")),
    Case("env-disk-full-gradiend", "environment", "the disk fills while the GRADIEND is saved",
         ("train", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/out", "--steps", "2"),
         "No space left on device", 1, patch=("gradiend.model.save_file", "enospc"), absent=("out/gradiend",)),
    Case("env-disk-full-data", "environment", "the disk fills while the data set is saved",
         ("data", "--texts", "offline:wiki-en", *CLASSES, "--max-documents", "400", *DATA_OUT),
         "No space left on device", 1, patch=("pandas.DataFrame.to_parquet", "enospc"), absent=("out",)),
    Case("env-missing-extra-datasets", "environment", "a Hugging Face dataset id without the datasets package",
         ("data", "--texts", "someone/dataset", *CLASSES, *DATA_OUT), "pip install 'gradiend[data]'",
         patch=("datasets", "no-module"), absent=("out",)),
    Case("env-missing-extra-gguf", "environment", "a .gguf model without the gguf package",
         ("train", "--model", "{tmp}/m.gguf", "--data", "{data}", "--out", "{tmp}/out"), "pip install 'gradiend[gguf]'",
         setup=write("m.gguf", b"GGUF junk"), patch=("gguf", "no-module"), absent=("out/gradiend",)),
)
