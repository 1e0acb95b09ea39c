"""The GRADIEND module: a one-hidden-layer autoencoder over the selected gradient dimensions.

Encoder ``h = act_e(w_e·x + b_e)`` (tanh by default), decoder ``x̂ = act_d(W_d h + b_d)`` (identity by default);
with latent size d = 1 that is 3n + 1 parameters for n input dimensions. The module also carries its
:class:`GradiendMeta` (base model, parameter selection, source/target, classes and their encoding directions),
so a saved GRADIEND directory is self-describing and a rewrite needs nothing else.

On disk (``save_pretrained``): ``model.safetensors`` holds the four weight tensors plus the kept-position
tensors of the parameter selection; ``config.json`` holds everything else as plain JSON. No pickle anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gradiend.artifacts import check_format_version, file_record, raise_if_damaged
from gradiend.constants import FORMAT_VERSION, GRADIEND_CONFIG_FILE, WEIGHTS_FILE
from gradiend.errors import GradiendError
from gradiend.gradients.types import GradientKind
from gradiend.identity import check_base_model, identity_of
from gradiend.io import atomic_dir, read_json, write_json
from gradiend.lm.params import ParamSelection
from gradiend.tasks import Task
from gradiend.topk import topk_count

ImportanceKind = Literal["decoder-weight", "encoder-weight", "decoder-bias", "decoder-sum"]
IMPORTANCE_KINDS: tuple[str, ...] = ("decoder-weight", "encoder-weight", "decoder-bias", "decoder-sum")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "id": _identity,
    "hardtanh": F.hardtanh,
    "relu": F.relu,
    "leakyrelu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
}
# act(−z) = −act(z): only for these is the sign flip of (w_e, b_e, W_d) an exact equivalence.
ODD_ACTIVATIONS = frozenset({"tanh", "id", "hardtanh"})
_ALIASES = {"identity": "id", "linear": "id", "smht": "hardtanh"}


def activation_name(name: str) -> str:
    """Canonical activation name (case-insensitive, a few aliases); unknown names are an error."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATIONS:
        raise GradiendError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return key


@dataclass(frozen=True, eq=False)
class GradiendMeta:
    """What a GRADIEND was trained on and how to read its latent value.

    ``directions`` maps each class id to the sign its rows encode toward (+1 / −1); after training the
    positive class (``classes[0]``) is +1. ``training`` is a JSON-compatible summary written by ``fit``.
    ``selection`` is None only for a GRADIEND that is not tied to a base model (e.g. synthetic tests).
    ``task`` is the :class:`gradiend.tasks.Task` it was trained on, as a dict (groups of raw classes, transitions,
    identity classes); ``classes`` are the task's (positive, negative) group ids.
    """

    selection: ParamSelection | None = None
    base_model: str = ""
    model_family: str = ""
    source: GradientKind = "alternative"
    target: GradientKind = "diff"
    classes: tuple[str, str] | None = None
    directions: Mapping[str, int] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    task: Mapping[str, Any] = field(default_factory=dict)


def canonical_directions(classes: tuple[str, str] | None) -> dict[str, int]:
    """The sign contract after normalisation: positive class → +1, negative class → −1."""
    return {} if classes is None else {classes[0]: 1, classes[1]: -1}


def memory_estimate(n: int, d: int = 1, dtype: torch.dtype = torch.float32, optimizer: bool = True) -> int:
    """Bytes a GRADIEND of input size ``n`` and latent size ``d`` needs (decoder bias included).

    Parameters: d·n (encoder) + d + n·d (decoder) + n (decoder bias) = 3n + 1 for d = 1. With
    ``optimizer=True`` (training) add one gradient and AdamW's two moment buffers per parameter (×4).
    ``fit`` additionally keeps one best-checkpoint copy per seed (+1×).
    """
    params = 2 * n * d + d + n
    factor = 4 if optimizer else 1
    return params * factor * torch.empty(0, dtype=dtype).element_size()


class Gradiend(torch.nn.Module):
    """Encoder/decoder over a flat input vector of size ``input_dim`` (see module docstring).

    Initialisation (like the reference package): encoder weight and bias ~ U(±1/√n) (PyTorch's ``nn.Linear``
    default); decoder weight and bias ~ U(±max|w_e|), so the decoder starts on the encoder's scale. Draws use a
    CPU generator seeded with ``seed`` (global RNG when None), so a seed gives the same GRADIEND on any device.
    ``init=False`` leaves the weights uninitialised (for loading or copying into them).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 1,
        activation_encoder: str = "tanh",
        activation_decoder: str = "id",
        bias_decoder: bool = True,
        meta: GradiendMeta | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        seed: int | None = None,
        init: bool = True,
    ) -> None:
        super().__init__()
        _check_dims(input_dim, latent_dim)
        self.meta = meta if meta is not None else GradiendMeta()
        _check_selection(self.meta, input_dim)
        self.activation_encoder = activation_name(activation_encoder)
        self.activation_decoder = activation_name(activation_decoder)
        kw = {"dtype": dtype, "device": device}
        self.encoder_weight = torch.nn.Parameter(torch.empty(latent_dim, input_dim, **kw))
        self.encoder_bias = torch.nn.Parameter(torch.empty(latent_dim, **kw))
        self.decoder_weight = torch.nn.Parameter(torch.empty(input_dim, latent_dim, **kw))
        self.decoder_bias = torch.nn.Parameter(torch.empty(input_dim, **kw)) if bias_decoder else None
        if init:
            self.reset_parameters(seed)

    # --- shape and identity ------------------------------------------------------------------

    @property
    def input_dim(self) -> int:
        return self.encoder_weight.shape[1]

    @property
    def latent_dim(self) -> int:
        return self.encoder_weight.shape[0]

    @property
    def bias_decoder(self) -> bool:
        return self.decoder_bias is not None

    @property
    def device(self) -> torch.device:
        return self.encoder_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder_weight.dtype

    @property
    def selection(self) -> ParamSelection | None:
        return self.meta.selection

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, latent_dim={self.latent_dim}, "
            f"encoder={self.activation_encoder}, decoder={self.activation_decoder}, bias_decoder={self.bias_decoder}"
        )

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw fresh weights (see class docstring); reproducible for a given ``seed``."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        bound = 1.0 / math.sqrt(self.input_dim)
        _uniform_(self.encoder_weight, bound, gen)
        _uniform_(self.encoder_bias, bound, gen)
        dec_bound = float(self.encoder_weight.abs().max())
        _uniform_(self.decoder_weight, dec_bound, gen)
        if self.decoder_bias is not None:
            _uniform_(self.decoder_bias, dec_bound, gen)

    # --- the autoencoder ---------------------------------------------------------------------

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_dim:
            raise GradiendError(
                f"GRADIEND input must have shape ({self.input_dim},) or (B, {self.input_dim}); got {tuple(x.shape)}"
            )
        return x.to(device=self.device, dtype=self.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent value(s): shape (d,) for x of shape (n,), (B, d) for (B, n); any dtype (cast)."""
        act = ACTIVATIONS[self.activation_encoder]
        return act(F.linear(self._as_input(x), self.encoder_weight, self.encoder_bias))

    def activate(self, projections: torch.Tensor) -> torch.Tensor:
        """Encoder output from the projections ``w_e·x`` (shape (B, d)): ``act(w_e·x + b_e)``, as :meth:`encode`.

        Lets a caller that computed ``w_e·x`` without materialising ``x`` (forward-mode AD) finish the encoding.
        """
        act = ACTIVATIONS[self.activation_encoder]
        return act(projections.to(device=self.device, dtype=self.dtype) + self.encoder_bias)

    def decode(self, h: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        """Input-space vector(s) for latent value(s) ``h``: shape (d,) → (n,), (B, d) → (B, n)."""
        h = torch.as_tensor(h, dtype=self.dtype, device=self.device)
        act = ACTIVATIONS[self.activation_decoder]
        return act(F.linear(h, self.decoder_weight, self.decoder_bias))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded, encoded) for input ``x``."""
        encoded = self.encode(x)
        return self.decode(encoded), encoded

    @torch.no_grad()
    def update_vector(self, h: float | Sequence[float]) -> torch.Tensor:
        """dec(h) as a flat input-space vector: a rewrite adds α times this to the selected parameters.

        A scalar ``h`` is used for every latent dimension. Note dec(0) = act_d(b_d), not 0.
        """
        hv = torch.as_tensor(h, dtype=self.dtype).reshape(-1)
        if hv.numel() == 1:
            hv = hv.expand(self.latent_dim)
        if hv.shape != (self.latent_dim,):
            raise GradiendError(f"h must be a scalar or have {self.latent_dim} entries; got shape {tuple(hv.shape)}")
        return self.decode(hv)

    # --- sign contract -----------------------------------------------------------------------

    @torch.no_grad()
    def flip_sign(self) -> None:
        """In place: negate w_e, b_e and W_d (never b_d) and the stored class directions.

        For an odd encoder activation enc → −enc and dec(−h) uses −W_d, so dec∘enc is unchanged; for other
        encoder activations the flip is not an equivalence and is refused.
        """
        if self.activation_encoder not in ODD_ACTIVATIONS:
            raise GradiendError(
                f"cannot flip the sign of a GRADIEND with encoder activation {self.activation_encoder!r}: "
                f"only {sorted(ODD_ACTIVATIONS)} are odd, so the flip would change dec∘enc"
            )
        for p in (self.encoder_weight, self.encoder_bias, self.decoder_weight):
            p.neg_()
        flipped = {c: -int(s) for c, s in self.meta.directions.items()}
        self.meta = replace(self.meta, directions=flipped)

    def strengthen_h(self, class_id: str) -> float:
        """Feature factor h whose update θ + α·dec(h) strengthens ``class_id`` (docs/architecture.md).

        source ∈ {factual, diff}: h = −dir[C]; source = alternative: h = +dir[C]. With target = alternative the
        decoder reconstructs the gradient of the *other* token of a row, so the sign flips once more.
        """
        class_id = self._group_of(class_id)
        if class_id not in self.meta.directions:
            known = sorted(self.meta.directions) or "none (train with classes to set them)"
            raise GradiendError(f"class {class_id!r} has no encoding direction; known classes: {known}")
        sign = 1.0 if self.meta.source == "alternative" else -1.0
        if self.meta.target == "alternative":
            sign = -sign
        return sign * float(self.meta.directions[class_id])

    def _group_of(self, class_id: str) -> str:
        """A raw class of a merged task stands for its group (strengthening 1SG in SG vs PL strengthens SG)."""
        for group, members in self.meta.task.get("groups", {}).items():
            if class_id in members and class_id not in self.meta.directions:
                return str(group)
        return class_id

    @property
    def task(self) -> Task | None:
        """The task this GRADIEND was trained on (None for GRADIENDs saved before tasks existed)."""
        if self.meta.task:
            return Task.from_dict(self.meta.task)
        classes = self.meta.classes
        return Task.pair(*classes) if classes is not None and len(classes) == 2 else None

    # --- importance and pruning --------------------------------------------------------------

    @torch.no_grad()
    def importance(self, kind: ImportanceKind = "decoder-weight") -> torch.Tensor:
        """Importance of every input dimension, shape (n,): how much this GRADIEND uses it."""
        if kind == "decoder-weight":
            return self.decoder_weight.abs().sum(dim=1)
        if kind == "encoder-weight":
            return self.encoder_weight.abs().sum(dim=0)
        bias = self.decoder_bias if self.decoder_bias is not None else torch.zeros_like(self.decoder_weight[:, 0])
        if kind == "decoder-bias":
            return bias.abs()
        if kind == "decoder-sum":
            return (self.decoder_weight.sum(dim=1) + bias).abs()
        raise GradiendError(f"unknown importance kind {kind!r}; choose one of {list(IMPORTANCE_KINDS)}")

    def topk(self, k: int | float, kind: ImportanceKind = "decoder-weight") -> torch.Tensor:
        """Input positions of the k most important dimensions, most important first.

        ``k`` is a count (int, capped at n) or a fraction in (0, 1] (float, ceil(k·n)): ``1`` keeps one
        dimension, ``1.0`` keeps all.
        """
        count = topk_count(k, self.input_dim)
        return torch.topk(self.importance(kind), count).indices

    def topk_global(self, k: int | float, kind: ImportanceKind = "decoder-weight") -> torch.Tensor:
        """Like :meth:`topk`, but as indices in the base model's global parameter index space."""
        if self.selection is None:
            raise GradiendError("this GRADIEND has no parameter selection, so it has no global indices")
        return self.selection.global_indices()[self.topk(k, kind).cpu()]

    @torch.no_grad()
    def prune(self, keep: torch.Tensor) -> Gradiend:
        """A new, smaller GRADIEND over the input positions ``keep`` (sorted; duplicates are an error).

        Encoding a pruned input equals encoding the full input with the dropped dimensions zeroed.
        """
        keep = _sorted_keep(keep, self.input_dim)
        selection = self.selection.restrict(keep) if self.selection is not None else None
        new = Gradiend(
            int(keep.numel()), self.latent_dim, self.activation_encoder, self.activation_decoder,
            self.bias_decoder, replace(self.meta, selection=selection), dtype=self.dtype, device=self.device,
            init=False,
        )
        idx = keep.to(self.device)
        new.encoder_weight.copy_(self.encoder_weight.index_select(1, idx))
        new.encoder_bias.copy_(self.encoder_bias)
        new.decoder_weight.copy_(self.decoder_weight.index_select(0, idx))
        if self.decoder_bias is not None:
            new.decoder_bias.copy_(self.decoder_bias.index_select(0, idx))
        return new

    # --- save / load -------------------------------------------------------------------------

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments that fix the module's shape and function."""
        return {
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "activation_encoder": self.activation_encoder,
            "activation_decoder": self.activation_decoder,
            "bias_decoder": self.bias_decoder,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory``, replacing it atomically."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.selection is not None:
            tensors.update({k: v.contiguous() for k, v in self.selection.kept_tensors().items()})
        with atomic_dir(directory) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "gradiend"})
            config = {**_config_json(self), "weights": {WEIGHTS_FILE: file_record(tmp / WEIGHTS_FILE)}}
            write_json(tmp / GRADIEND_CONFIG_FILE, config)
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        *, revision: str | None = None, token: str | bool | None = None, base_model: Any = None,
    ) -> Gradiend:
        """Load a directory written by :meth:`save_pretrained` (safetensors only, never pickle).

        ``directory`` may also be a Hugging Face Hub id ``org/name`` (at ``revision``; cache, offline mode and
        token as everywhere in the Hub stack; see :mod:`gradiend.hub`). With ``base_model`` (a LoadedModel or a
        transformers model) the GRADIEND's base model identity is checked against it (:mod:`gradiend.identity`).

        The weight file is checked against the size and hash recorded in ``config.json`` first, so a file cut
        short or changed after saving is an error naming it, never a silently different GRADIEND.
        """
        from gradiend.hub import resolve

        directory = resolve(directory, revision=revision, token=token)
        config = _read_config(directory)
        tensors = _load_weights(directory, config)
        try:
            arch = config["architecture"]
            meta = _meta_from_config(config, tensors)
            model = cls(
                arch["input_dim"], arch["latent_dim"], arch["activation_encoder"], arch["activation_decoder"],
                arch["bias_decoder"], meta, dtype=getattr(torch, arch["dtype"]), init=False,
            )
            weights = {k: v for k, v in tensors.items() if not k.startswith("kept.")}
            model.load_state_dict(weights, strict=True, assign=True)
        except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise GradiendError(f"{directory} does not hold a consistent GRADIEND ({type(exc).__name__}: {exc}): "
                                f"{GRADIEND_CONFIG_FILE} and {WEIGHTS_FILE} do not match; retrain it") from None
        if base_model is not None:
            check_base_model(model, base_model)
        return model.to(device=device, dtype=dtype)

    def push_to_hub(
        self, repo_id: str, *, private: bool | None = None, token: str | None = None,
        include_rewrites: Mapping[str, str | Path] | None = None, run_dir: str | Path | None = None,
    ) -> str:
        """Upload this GRADIEND with its model card to the Hub repository ``repo_id``; return its URL.

        ``include_rewrites`` maps a key (e.g. ``"3SG"``) to a rewritten model directory; each goes to its own
        repository ``<repo_id>-<key>`` with its card. ``run_dir`` (the run that made this GRADIEND) lets the cards
        report its data, metrics and selection. See :func:`gradiend.hub.push_gradiend`.
        """
        from gradiend.hub import push_gradiend

        return push_gradiend(self, repo_id, private=private, token=token, rewrites=include_rewrites,
                             run_dir=run_dir)


# --- helpers -------------------------------------------------------------------------------------


def _uniform_(p: torch.Tensor, bound: float, gen: torch.Generator | None) -> None:
    draw = torch.empty(p.shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen)
    p.copy_(draw)


def _check_dims(input_dim: int, latent_dim: int) -> None:
    for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradiendError(f"{name} must be a positive int, got {value!r}")


def _check_selection(meta: GradiendMeta, input_dim: int) -> None:
    if meta.selection is not None and meta.selection.input_dim != input_dim:
        raise GradiendError(
            f"parameter selection has {meta.selection.input_dim} input dimensions but the GRADIEND has {input_dim}"
        )


def _sorted_keep(keep: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.int64).reshape(-1).cpu()
    if keep.numel() == 0:
        raise GradiendError("prune needs at least one dimension to keep")
    keep = keep.sort().values
    if keep[0] < 0 or keep[-1] >= n:
        raise GradiendError(f"keep indices must lie in [0, {n}); got range [{int(keep[0])}, {int(keep[-1])}]")
    if bool((keep[1:] == keep[:-1]).any()):
        raise GradiendError("keep indices contain duplicates")
    return keep


def _config_json(model: Gradiend) -> dict[str, Any]:
    meta, sel = model.meta, model.selection
    return {
        "format_version": FORMAT_VERSION,
        "kind": "gradiend",
        "architecture": model.architecture(),
        "base_model": meta.base_model,
        "model_family": meta.model_family,
        "total_params": sel.total_params if sel is not None else None,
        "base_model_identity": identity_of(meta.base_model, sel).to_json() if sel is not None else None,
        "parameters": sel.to_json() if sel is not None else None,
        "source": meta.source,
        "target": meta.target,
        "classes": list(meta.classes) if meta.classes is not None else None,
        "directions": dict(meta.directions),
        "task": dict(meta.task),
        "training": dict(meta.training),
    }


def _read_config(directory: Path) -> dict[str, Any]:
    config_path, weights_path = directory / GRADIEND_CONFIG_FILE, directory / WEIGHTS_FILE
    if not (config_path.is_file() and weights_path.is_file()):
        raise GradiendError(
            f"{directory} is not a GRADIEND directory: it needs {GRADIEND_CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by Gradiend.save_pretrained)"
        )
    config = read_json(config_path)
    if not isinstance(config, dict) or config.get("kind") != "gradiend" or "architecture" not in config:
        raise GradiendError(
            f"{directory} is not a GRADIEND directory: {GRADIEND_CONFIG_FILE} has no GRADIEND architecture "
            "(is it a base model directory?)"
        )
    check_format_version(config.get("format_version"), config_path)
    return config


def _load_weights(directory: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weight tensors, after checking them against the record in ``config.json`` (when it has one)."""
    way_out = ("retrain it (gradiend run CONFIG redoes the train stage of its run directory) or restore the "
               "directory from a copy")
    raise_if_damaged(directory, config.get("weights") or {}, way_out)
    try:
        return load_file(str(directory / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise GradiendError(f"{directory / WEIGHTS_FILE} cannot be read as safetensors ({exc}); {way_out}") from None


def _meta_from_config(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> GradiendMeta:
    selection = None
    if config.get("parameters") is not None:
        kept = {k: v for k, v in tensors.items() if k.startswith("kept.")}
        selection = ParamSelection.from_json(config["parameters"], kept, int(config["total_params"]))
    classes = config.get("classes")
    return GradiendMeta(
        selection=selection,
        base_model=config.get("base_model", ""),
        model_family=config.get("model_family", ""),
        source=config.get("source", "alternative"),
        target=config.get("target", "diff"),
        classes=tuple(classes) if classes is not None else None,
        directions={str(c): int(s) for c, s in config.get("directions", {}).items()},
        training=config.get("training", {}),
        format_version=int(config["format_version"]),
        task=config.get("task") or {},
    )
