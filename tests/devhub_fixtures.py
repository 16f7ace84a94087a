"""Pytest fixtures for a DevHub (local Hugging Face Hub protocol server).

Use from a test module with ``from devhub_fixtures import devhub, devhub_root, hf_home  # noqa: F401``
or register them once in conftest.py.

- ``devhub_root``: an empty hub folder with three users' tokens (see ``TOKENS``);
  tests add repos with :func:`hpcwizard.devhub.write_repo`.
- ``devhub``: a started :class:`~hpcwizard.devhub.DevHub` serving ``devhub_root``.
- ``hf_home``: HF_HOME, HF_TOKEN_PATH, HF_TOKEN and HF_ENDPOINT isolated for the
  test, so nothing reads or writes the machine's real token or cache.

Point huggingface_hub at the server with ``endpoint=devhub.url`` (``HfApi``,
``hf_hub_download``, ``snapshot_download`` all accept it) and always pass
``cache_dir=`` (the default cache dir is fixed at import time).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcwizard.devhub import DevHub, add_token

# user -> token; alice is a member of org "vilab".
TOKENS = {"alice": "hf_devhub_alice_0001", "bob": "hf_devhub_bob_0002", "carol": "hf_devhub_carol_0003"}
ORGS = {"alice": ["vilab"]}


@pytest.fixture
def devhub_root(tmp_path: Path) -> Path:
    root = tmp_path / "devhub"
    for user, token in TOKENS.items():
        add_token(root, token, user, orgs=ORGS.get(user, []))
    return root


@pytest.fixture
def devhub(devhub_root: Path) -> Iterator[DevHub]:
    with DevHub(devhub_root) as hub:
        yield hub


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return home
