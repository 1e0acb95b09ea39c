"""A local stand-in for the Hugging Face Hub that no network reaches.

- Loading: a Hub cache laid out as huggingface_hub writes it (``models--org--name/{blobs,snapshots/<commit>,refs/main}``,
  snapshot files as relative links into ``blobs/``), read by the real ``snapshot_download`` in offline mode.
- Uploading: ``HfApi.create_repo`` and ``HfApi.upload_folder`` (the two calls of huggingface_hub's HTTP layer that an
  upload makes) write into that cache as a new commit, exactly as a later download would lay it out.
- Every other HTTP request of huggingface_hub goes to a transport that answers 404 "repository not found" and
  records the request, so nothing leaves the machine and a test can assert what was asked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import huggingface_hub as hf
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http


@dataclass
class HubStub:
    """The stub's state: its cache directory, the repositories created (id → private flag), requests refused."""

    cache: Path
    repos: dict[str, bool | None] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    uploads: list[tuple[str, str]] = field(default_factory=list)  # (repo_id, commit message)

    def repo_dir(self, repo_id: str) -> Path:
        return self.cache / f"models--{repo_id.replace('/', '--')}"

    def commit(self, repo_id: str, folder: Path, revision: str = "main") -> str:
        """Lay ``folder`` out as a new commit of ``repo_id`` (blobs, snapshot links, ref); return the commit id."""
        repo = self.repo_dir(repo_id)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        digests = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        commit = hashlib.sha1(repr(sorted(digests.items())).encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        for rel, digest in digests.items():
            blob = repo / "blobs" / digest
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes((folder / rel).read_bytes())
            link = snapshot / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
        return commit

    def files(self, repo_id: str) -> dict[str, Path]:
        """The files of the repository's ``main`` snapshot (relative path → path)."""
        repo = self.repo_dir(repo_id)
        snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text()
        return {p.relative_to(snapshot).as_posix(): p for p in snapshot.rglob("*") if p.is_file()}


def _refusing_transport(stub: HubStub) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        stub.refused.append(str(request.url))
        return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"},
                               json={"error": "Repository not found"}, request=request)

    return httpx2.MockTransport(handle)


def stub_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    """An offline Hub stand-in with a token in the environment; yields the :class:`HubStub`.

    Use it in a test module as ``@pytest.fixture def hub(tmp_path, monkeypatch): yield from stub_hub(...)``.
    """
    stub = HubStub(tmp_path / "hub-cache")
    stub.cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(stub.cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_stub_write_token")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(stub.cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def create_repo(self, repo_id: str, *, private: bool | None = None, **_: object) -> str:
        assert self.token == "hf_stub_write_token" or _.get("token") == "hf_stub_write_token"
        stub.repos.setdefault(repo_id, private)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: str, commit_message: str = "", **_: object) -> str:
        if repo_id not in stub.repos:
            raise hf.errors.RepositoryNotFoundError(f"{repo_id} not found",
                                                    response=httpx2.Response(404, request=_request(repo_id)))
        commit = stub.commit(repo_id, Path(folder_path))
        stub.uploads.append((repo_id, commit_message))
        return f"https://huggingface.co/{repo_id}/commit/{commit}"

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
    _http.set_client_factory(lambda: httpx2.Client(transport=_refusing_transport(stub), follow_redirects=True,
                                                   event_hooks={"request": [_http.hf_request_event_hook]}))
    yield stub
    _http.set_client_factory(_http.default_client_factory)


def _request(repo_id: str) -> httpx2.Request:
    return httpx2.Request("POST", f"https://huggingface.co/api/models/{repo_id}/commit/main")


def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave offline mode (requests then reach the stub's refusing transport, never the network)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
