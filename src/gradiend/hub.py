"""GRADIENDs and rewritten models on the Hugging Face Hub: resolve ``org/name`` to a local snapshot, upload a
directory with its card.

Loading goes through :func:`huggingface_hub.snapshot_download`, so the Hub cache, ``HF_HUB_OFFLINE``, revisions
and the token from the usual places (``HF_TOKEN``, ``hf auth login``) behave as everywhere else in the Hugging
Face stack. Uploading uses :class:`huggingface_hub.HfApi` (``create_repo`` + ``upload_folder``). Each failure a
user can fix — offline and not cached, repository not found, no token — is one :class:`GradiendError` line.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gradiend.errors import GradiendError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(spec: str | Path) -> bool:
    """True for ``org/name`` that is not an existing local path (a local path always wins)."""
    text = str(spec)
    return not Path(text).expanduser().exists() and bool(_HUB_ID.match(text))


def resolve(spec: str | Path, revision: str | None = None, token: str | bool | None = None) -> Path:
    """A local directory for ``spec``: the path itself, or the Hub snapshot of ``org/name`` at ``revision``."""
    if not is_hub_id(spec):
        return Path(spec).expanduser()
    import huggingface_hub as hf
    from huggingface_hub import errors

    repo_id = str(spec)
    try:
        return Path(hf.snapshot_download(repo_id, revision=revision, token=token))
    except errors.RevisionNotFoundError as exc:
        raise GradiendError(f"Hub repository {repo_id!r} has no revision {revision!r}") from exc
    except errors.RepositoryNotFoundError as exc:
        raise GradiendError(
            f"{repo_id!r} is no local directory and Hub repository {repo_id!r} not found (or private: log in "
            "with `hf auth login` or set HF_TOKEN)"
        ) from exc
    except errors.LocalEntryNotFoundError as exc:
        raise GradiendError(_not_cached(repo_id, revision)) from exc


def _not_cached(repo_id: str, revision: str | None) -> str:
    from huggingface_hub import constants

    what = f"{repo_id!r} is no local directory and Hub repository {repo_id!r}"
    at = f" at revision {revision!r}" if revision else ""
    if constants.HF_HUB_OFFLINE:
        return (f"{what}{at} is not in the local Hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1: "
                "download it once online, or pass a local directory")
    return f"{what}{at} could not be downloaded and is not cached: check the connection"


def require_token(token: str | None) -> str:
    """The token to upload with: ``token``, else the usual environment; none at all is an error."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise GradiendError("cannot push to the Hub with HF_HUB_OFFLINE=1: unset it to upload")
    found = token or get_token()
    if not found:
        raise GradiendError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a write token)")
    return found


def upload_dir(directory: Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
               message: str = "Upload with gradiend") -> str:
    """Create ``repo_id`` (kept if it exists) and upload ``directory`` into it; return the repository URL."""
    from huggingface_hub import HfApi, errors

    api = HfApi(token=require_token(token))
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(directory), commit_message=message,
                          repo_type="model", ignore_patterns=[".*"])
    except errors.RepositoryNotFoundError as exc:
        raise GradiendError(f"Hub repository {repo_id!r} not found or not writable with this token") from exc
    except errors.HfHubHTTPError as exc:
        raise GradiendError(f"upload to {repo_id!r} failed: {str(exc).splitlines()[0]}") from exc
    log.info("uploaded %s to %s", directory, url)
    return str(url)


def rewrite_repo_id(repo_id: str, key: str) -> str:
    """The repository a GRADIEND's rewritten model ``key`` goes to: ``<repo_id>-<key>``."""
    safe = re.sub(r"[^\w.-]", "-", key)
    return f"{repo_id}-{safe}"


def push_gradiend(gradiend, repo_id: str, *, private: bool | None = None, token: str | None = None,
                  rewrites: Mapping[str, str | Path] | None = None, run_dir: str | Path | None = None) -> str:
    """Upload ``gradiend`` (saved afresh, with its card) to ``repo_id`` and each rewritten model to its own repo.

    Each rewritten model directory gets its card (naming its repository) written into it first. Returns the
    GRADIEND repository's URL.
    """
    from gradiend.cards import gradiend_card, rewrite_card, write_card

    token = require_token(token)
    with tempfile.TemporaryDirectory(prefix="gradiend-push-") as tmp:
        staged = gradiend.save_pretrained(Path(tmp) / "gradiend")
        write_card(staged, gradiend_card(staged, run_dir, repo_id))
        url = upload_dir(staged, repo_id, private=private, token=token)
    for key, model_dir in (rewrites or {}).items():
        target = rewrite_repo_id(repo_id, key)
        write_card(model_dir, rewrite_card(model_dir, run_dir, key, repo_id=target))
        upload_dir(Path(model_dir), target, private=private, token=token)
    return url


def push_run(run_dir: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
             with_rewrites: bool = False) -> list[str]:
    """Upload a run's GRADIEND (and with ``with_rewrites`` its rewritten models); return the repository ids."""
    from gradiend import constants as C
    from gradiend.cards import write_cards
    from gradiend.model import Gradiend

    run_dir = Path(run_dir)
    token = require_token(token)  # before any work: no token, no upload
    if not (run_dir / C.GRADIEND_DIR / C.GRADIEND_CONFIG_FILE).is_file():
        raise GradiendError(f"{run_dir} has no trained GRADIEND ({C.GRADIEND_DIR}/): run `gradiend train` first")
    write_cards(run_dir)
    rewritten = run_dir / C.REWRITTEN_DIR
    rewrites = {d.name: d for d in sorted(rewritten.iterdir()) if d.is_dir()} if with_rewrites and rewritten.is_dir() else {}
    push_gradiend(Gradiend.from_pretrained(run_dir / C.GRADIEND_DIR), repo_id, private=private, token=token,
                  rewrites=rewrites, run_dir=run_dir)
    return [repo_id, *(rewrite_repo_id(repo_id, k) for k in rewrites)]
