"""The experiment configuration: one frozen dataclass per stage, nested in :class:`ExperimentConfig`.

A run is described by one TOML file::

    name = "pronouns"
    [model]
    spec = "offline:smollm2-135m"
    [data]
    texts = "offline:wiki-en"
    [data.classes]
    3SG = ["he", "she", "it"]
    3PL = ["they"]
    [train]
    lr = 1e-5

``load_config(path)`` validates it (unknown keys with a "did you mean", wrong types, missing required keys) and
fills in the defaults; :meth:`ExperimentConfig.to_toml` writes the fully resolved file back, so the
``config.toml`` of a run reproduces it. Each section is built from its dataclass type through
``dataclasses.fields`` and the type hints, so each stage owns its config class and this module only nests
them: ``[data.options]`` is ``gradiend.data.DataConfig``, ``[train]`` is ``gradiend.train.TrainConfig``,
``[eval]`` is ``gradiend.evaluate.decoder.EvalConfig``, ``[gradients]`` is ``gradiend.stages.GradientConfig``.
``[model]``, ``[data]`` (source and classes) and ``[rewrite]`` are defined here;
swapping in another class is a change of the field's type on :class:`ExperimentConfig`.

:func:`stage_fingerprint` hashes the sections a stage depends on, so the pipeline can skip a stage whose
artifacts were made with the same fingerprint.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradiend.constants import FORMAT_VERSION
from gradiend.data.config import DataConfig
from gradiend.errors import GradiendError
from gradiend.evaluate.decoder import EvalConfig
from gradiend.stages import GradientConfig
from gradiend.tasks import TaskConfig
from gradiend.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# metadata flag on a field that does not change a stage's result (device, batch sizes for memory): it is left
# out of the fingerprint so that moving a run to another machine does not recompute it
NO_FINGERPRINT = {"fingerprint": False}
FINGERPRINT_IF_SET = {"fingerprint": "unless-default"}  # fingerprinted only when not the default (old runs keep theirs)

# TOML has no null: `key = "none"` sets an optional non-text field to None (e.g. neutral_size = "none": all)
NONE_WORD = "none"


@dataclass(frozen=True)
class ModelConfig:
    """The base model and the parameters whose gradients the GRADIEND sees."""

    spec: str  # hub id, local directory, .gguf file or offline:<name>
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = field(default="auto", metadata=NO_FINGERPRINT)  # auto, cpu, cuda:N or shard (gradiend.devices)
    params: tuple[str, ...] = ()  # glob patterns over parameter names; () = the whole backbone
    layers: tuple[int, ...] | None = None  # restrict to these transformer layers; None = all
    # where the GRADIEND's gradients come from: "auto" = the model's own LM loss, or the auxiliary MLM head when
    # `head` is set (decoder-only models); "masked-head" requires `head` (see gradiend.lm.mlm_head)
    objective: Literal["auto", "masked-head"] = field(default="auto", metadata=FINGERPRINT_IF_SET)
    head: str | None = None  # directory of an auxiliary MLM head (`gradiend head train`)


@dataclass(frozen=True)
class ClassConstraints:
    """What a match of one class must also be (``[data.constraints.<class id>]``; see ``FeatureClass``).

    ``pos``/``dep`` list alternatives separated by ``|`` (``"PRON|DET"``), ``morph`` features that must all hold
    (``"Number=Sing|Person=3"``); ``lemma = true`` matches every inflected form of the targets. Any of these
    runs the data stage through spaCy (``[data.options] spacy_model``).
    """

    pos: str | None = None
    dep: str | None = None
    morph: str | None = None
    lemma: bool = False
    case_sensitive: bool = False


@dataclass(frozen=True)
class DataSection:
    """Where the feature data set comes from: raw text to mine, or a prepared table to import.

    With ``texts``, the keyword fields are the arguments of :func:`gradiend.data.create_data`; ``classes`` maps each
    class id to its target words, in order; ``constraints`` optionally narrows a class's matches by part of speech,
    dependency, morphology or lemma (a word may then be in several classes). With ``table`` (a parquet/CSV/JSONL
    file, a saved dataset directory or a Hugging Face dataset id; :mod:`gradiend.data.table`), ``classes`` is
    optional: its keys pick and order the table's classes (word lists may stay empty); ``neutral`` is the neutral
    text (default: the table's own sentences). ``hf_config`` picks one config of a Hugging Face source.
    """

    texts: str | tuple[str, ...] | None = None  # offline:<name>, a file path, a Hugging Face dataset id, or texts
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    constraints: dict[str, ClassConstraints] = field(default_factory=dict)
    table: str | None = None
    neutral: str | None = None
    text_column: str = "text"
    id_column: str | None = None
    max_documents: int | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    options: DataConfig = field(default_factory=DataConfig)


@dataclass(frozen=True)
class RewriteConfig:
    """Which rewritten models to save, and how their (h, α) is chosen."""

    strengthen: tuple[str, ...] = ()  # class ids; one model directory per class
    weaken: tuple[str, ...] = ()
    policy: Literal["selected", "fixed"] = "selected"  # the decoder grid's selected cell, or `alpha` below
    alpha: float | None = None  # only for policy = "fixed"
    force: bool = False  # save even a selection marked useful = false (it beat neither base nor LMS floor)


# section name in the TOML file -> field name on ExperimentConfig; the classes come from the field types
SECTIONS: tuple[str, ...] = ("model", "data", "task", "gradients", "train", "eval", "rewrite")

# which sections each stage's result depends on (its fingerprint hashes exactly these)
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "train": ("model", "data", "task", "gradients", "train"),
    "evaluate": ("model", "data", "task", "gradients", "train", "eval"),
    "rewrite": ("model", "data", "task", "gradients", "train", "eval", "rewrite"),
}

# what a user most likely forgot, per required key
_EXAMPLES = {
    "model.spec": 'spec = "offline:smollm2-135m"',
    "data.texts": 'texts = "offline:wiki-en" (or a file path, a Hugging Face dataset id, a list of texts)',
    "data.classes": '[data.classes] with two classes, e.g. 3SG = ["he", "she"] and 3PL = ["they"]',
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs; ``output_dir / name`` is its run directory."""

    model: ModelConfig
    data: DataSection
    task: TaskConfig = field(default_factory=TaskConfig)
    gradients: GradientConfig = field(default_factory=GradientConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    name: str = "run"
    output_dir: str = "runs"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def class_ids(self) -> tuple[str, ...]:
        return tuple(self.data.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists, None values left out: TOML has no null)."""
        return _to_plain(self)

    def to_toml(self) -> str:
        """The fully resolved configuration as TOML text; ``load_config`` of it gives an equal config."""
        tomli_w = _tomli_w()
        _check_writable(self)
        header = "# gradiend experiment configuration, fully resolved (defaults written out)\n"
        return header + _inline_short_arrays(tomli_w.dumps(self.to_dict()))

    def fingerprint(self, stage: str) -> str:
        return stage_fingerprint(self, stage)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read, validate and complete a TOML experiment configuration."""
    path = Path(path)
    if not path.is_file():
        raise GradiendError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GradiendError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_dict(raw)


def loads_config(text: str) -> ExperimentConfig:
    """Like :func:`load_config` for TOML text."""
    try:
        return config_from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise GradiendError(f"not valid TOML: {exc}") from exc


def save_config(config: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved configuration atomically."""
    from gradiend.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(config.to_toml())
    return path


def config_from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from nested plain data (as parsed from TOML)."""
    config = _build(ExperimentConfig, raw, where="")
    _check_cross_sections(config)
    return config


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """A copy of ``config`` with ``section.key=value`` assignments applied (values as TOML literals).

    ``train.lr=1e-4``, ``train.seeds=[0, 1]``, ``data.options.seed=3``, ``name=other``; a value that is not a
    TOML literal is taken as a string. The result is validated like a loaded file.
    """
    return config_from_dict(apply_raw_overrides(config.to_dict(), overrides))


def apply_raw_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of plain nested data (as parsed from TOML) with ``section.key=value`` assignments applied."""
    import copy

    raw = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise GradiendError(f"override {item!r} is not of the form section.key=value")
        *path, last = [part.strip() for part in key.split(".")]
        table = raw
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise GradiendError(f"override {item!r}: {part!r} is not a section")
        table[last] = _toml_value(text.strip())
    return raw


def data_section_from_dict(raw: Mapping[str, Any], where: str = "data") -> DataSection:
    """A validated ``[data]`` section on its own (a study's data set, shared by several runs)."""
    data = _build(DataSection, raw, where=where)
    _check_data_source(data)
    if data.texts is not None:
        _check_classes(data)
    return data


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def stage_fingerprint(config: ExperimentConfig, stage: str) -> str:
    """A short hash of the sections ``stage`` depends on (fields marked NO_FINGERPRINT left out)."""
    if stage not in STAGE_SECTIONS:
        raise GradiendError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_SECTIONS)}")
    return _fingerprint(stage, {section: getattr(config, section) for section in STAGE_SECTIONS[stage]})


def data_fingerprint_of(data: DataSection) -> str:
    """The data stage's fingerprint of a ``[data]`` section alone (equal to ``stage_fingerprint(config, "data")``)."""
    return _fingerprint("data", {"data": data})


def _fingerprint(stage: str, sections: Mapping[str, Any]) -> str:
    payload: dict[str, Any] = {"format": FORMAT_VERSION, "stage": stage}
    for name, value in sections.items():
        payload[name] = _to_plain(value, for_fingerprint=True)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_fingerprints(config: ExperimentConfig) -> dict[str, str]:
    return {stage: stage_fingerprint(config, stage) for stage in STAGE_SECTIONS}


# ---------------------------------------------------------------------------------------------------------------
# building a dataclass from plain data, generically (works for any frozen config class)


def _build(cls: type, raw: Any, where: str) -> Any:
    label = f"[{where}]" if where else "the top level"
    if not isinstance(raw, Mapping):
        raise GradiendError(f"{label} must be a table, got {_describe(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise GradiendError(_unknown_key_message(key, list(fields), where))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_where = f"{where}.{name}" if where else name
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], key_where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise GradiendError(_missing_message(key_where, hints[name]))
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # a section class's own validation
        message = str(exc)
        raise GradiendError(message if message.startswith(label) else f"{label}: {message}") from exc


def _unknown_key_message(key: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not where:
        kind = "section" if key in SECTIONS or close and close[0] in SECTIONS else "key"
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
        return f"unknown {kind} '{key}' at the top level{hint}"
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key '{key}' in [{where}]{hint}"


def _missing_message(key_where: str, hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        first = next((f.name for f in dataclasses.fields(hint) if f.default is dataclasses.MISSING), "")
        example = _EXAMPLES.get(f"{key_where}.{first}", "")
        return f"missing required section [{key_where}]" + (f" (e.g. {example})" if example else "")
    section, _, key = key_where.rpartition(".")
    example = _EXAMPLES.get(key_where, "")
    place = f" in [{section}]" if section else ""
    return f"missing required key '{key}'{place}" + (f"; e.g. {example}" if example else "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type hint and convert TOML shapes (lists → tuples); raise a clear error."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args, where)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise GradiendError(f"{where} must be one of {allowed}, got {value!r}")
        return value
    if origin in (tuple, list):
        return _coerce_sequence(value, origin, args, where)
    if origin in (dict, Mapping) or hint is dict:
        return _coerce_mapping(value, args, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    return _coerce_scalar(value, hint, where)


def _coerce_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    options = [a for a in args if a is not type(None)]
    if type(None) in args and (value is None or _is_none_word(value) and not _accepts_str(options)):
        return None
    errors = []
    for option in options:
        try:
            return _coerce(value, option, where)
        except GradiendError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    names = " or ".join(_type_name(a) for a in options)
    raise GradiendError(f"{where} must be {names}, got {_describe(value)}")


def _is_none_word(value: Any) -> bool:
    return isinstance(value, str) and value.lower() == NONE_WORD


def _accepts_str(options: list[Any]) -> bool:
    """Whether a string is a legal value of one of ``options`` (then "none" stays a string)."""
    return any(o is str or typing.get_origin(o) is Literal and NONE_WORD in typing.get_args(o) for o in options)


def _coerce_sequence(value: Any, origin: type, args: tuple[Any, ...], where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise GradiendError(f"{where} must be a list, got {_describe(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple
        if len(value) != len(args):
            raise GradiendError(f"{where} must have {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item = args[0] if args else Any
    items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_mapping(value: Any, args: tuple[Any, ...], where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise GradiendError(f"{where} must be a table, got {_describe(value)}")
    key_hint, value_hint = args if args else (Any, Any)
    return {
        _coerce(k, key_hint, where): _coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()
    }


def _coerce_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    if hint is Path and isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise GradiendError(f"{where} must be one of {allowed}, got {value!r}") from None
    if isinstance(hint, type) and hint not in (int, float, str, bool) and isinstance(value, hint):
        return value
    raise GradiendError(f"{where} must be {_type_name(hint)}, got {_describe(value)}")


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list", dict: "table"}
    name = kind.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{name} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _check_cross_sections(config: ExperimentConfig) -> None:
    """Checks that involve more than one section, or values the type alone does not rule out."""
    if config.model.objective == "masked-head" and config.model.head is None:
        raise GradiendError('[model] objective = "masked-head" needs head = DIR (an auxiliary MLM head; train one '
                            "with: gradiend head train --model SPEC --texts SOURCE --out DIR)")
    classes = config.data.classes
    _check_data_source(config.data)
    if config.data.texts is not None:
        _check_classes(config.data)
    names = set(classes)
    if classes or config.task.groups or config.task.positive:
        task = config.task.resolve(list(classes)) if classes else None
        names |= set(task.group_ids if task else ()) | set(config.task.groups)
    rewrite = config.rewrite
    for key in ("strengthen", "weaken"):
        for cid in getattr(rewrite, key, ()):
            if names and cid not in names:
                raise GradiendError(f"[rewrite] {key} names class {cid!r}; classes: {', '.join(sorted(names))}")
    if getattr(rewrite, "policy", None) == "fixed" and not (rewrite.alpha or 0) > 0:
        raise GradiendError('[rewrite] policy = "fixed" needs alpha > 0')


def _check_data_source(data: DataSection) -> None:
    if (data.texts is None) == (data.table is None):
        raise GradiendError("[data] needs exactly one of texts (raw text to mine) and table (a prepared table to "
                            "import)")
    if data.texts is not None and not data.classes:
        raise GradiendError("[data] with texts needs [data.classes] (at least two classes, e.g. "
                            '3SG = ["he", "she"] and 3PL = ["they"])')


def _check_classes(data: DataSection) -> None:
    classes = data.classes
    if len(classes) < 2:
        raise GradiendError(f"[data.classes] needs at least two classes, got {len(classes)}: {list(classes)}")
    owner: dict[str, str] = {}
    for cid, words in classes.items():
        if not words:
            raise GradiendError(f"[data.classes] class {cid!r} has no target words")
        for word in words:
            other = owner.setdefault(word.casefold(), cid)
            if other != cid and not (_constrained(data, other) and _constrained(data, cid)):
                raise GradiendError(f"[data.classes] the word {word!r} is in both {other!r} and {cid!r}; a word may "
                                    "be in two classes only when both have [data.constraints] that tell them apart")
    unknown = [cid for cid in data.constraints if cid not in classes]
    if unknown:
        raise GradiendError(f"[data.constraints] names class(es) {unknown}; classes: {', '.join(classes)}")


def _constrained(data: DataSection, class_id: str) -> bool:
    c = data.constraints.get(class_id)
    return c is not None and (c.lemma or any(v is not None for v in (c.pos, c.dep, c.morph)))


# ---------------------------------------------------------------------------------------------------------------
# writing


def to_plain(section: Any) -> Any:
    """A config section (or value) as plain TOML data: tuples as lists, None as "none" where it is not the default."""
    return _to_plain(section)


def _unfingerprinted(f: dataclasses.Field, value: Any) -> bool:
    flag = f.metadata.get("fingerprint", True)
    return not flag or (flag == FINGERPRINT_IF_SET["fingerprint"] and value == f.default)


def _to_plain(obj: Any, for_fingerprint: bool = False) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if for_fingerprint and _unfingerprinted(f, value):
                continue
            if value is not None:
                out[f.name] = _to_plain(value, for_fingerprint)
            elif f.default is not None and not for_fingerprint:  # TOML has no null
                out[f.name] = NONE_WORD
        if not for_fingerprint:  # TOML writes scalars before tables; keep sections last and in order
            out = dict(sorted(out.items(), key=lambda kv: isinstance(kv[1], dict)))
        return out
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v, for_fingerprint) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v, for_fingerprint) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _check_writable(obj: Any, where: str = "") -> None:
    """TOML has no null: None is left out where it is the default, else written as "none", which reads back
    as None only where the field takes no strings (for ``str | None`` it would read back as the string)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            _check_writable(value, key)
        elif value is None and f.default is not None and not _none_word_reads_back(hints[f.name]):
            raise GradiendError(f"{key} is None but its default is not; TOML cannot express that for this field")


def _none_word_reads_back(hint: Any) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return type(None) in args and not _accepts_str([a for a in args if a is not type(None)])


def _inline_short_arrays(text: str, width: int = 120) -> str:
    """tomli-w writes every array one item per line; put arrays of scalars that fit ``width`` on one line."""
    out: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.endswith(" = ["):
            out.append(line)
            continue
        block = [line]
        for item in lines:
            block.append(item)
            if item == "]":
                break
        items = [b.strip().removesuffix(",") for b in block[1:-1]]
        joined = f"{line}{', '.join(items)}]"
        nested = any(i.startswith(("[", "{")) for i in items)
        out.append(joined if len(joined) <= width and not nested else "\n".join(block))
    return "\n".join(out) + "\n"


def _tomli_w() -> Any:
    try:
        import tomli_w
    except ImportError as exc:  # a declared dependency; only a broken install lacks it
        raise GradiendError("writing TOML needs the 'tomli-w' package: pip install tomli-w") from exc
    return tomli_w
