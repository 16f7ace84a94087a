"""The demo: local Hub repos for the demo recipe, its token, and a plan.

``scripts/demo`` (the README's demo command) uses this to run hpcwizard on
the embedded default: the local Slurm cluster plus a local server speaking
the Hub protocol, serving the repos built here. The tests build the same
repos, so the demo and the end-to-end tests prove the same chain.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hpcwizard.devhub import add_token, make_tar, write_repo

CODE_BASE = Path(__file__).resolve().parent / "code_base"
DEMO_ORG = "hpcwizard-demo"
DEMO_TQDM = "4.67.1"


@dataclass(frozen=True)
class DemoHub:
    root: Path
    user: str
    token: str  # the demo user's token: only ever written to hub.yaml and a 0600 token file


def build_demo_hub(root: Path, *, user: str = "demo", token: str | None = None) -> DemoHub:
    """Write the demo recipe's repos (and a token for ``user``) under ``root``."""
    token = token or f"hf_demo_{secrets.token_hex(12)}"
    add_token(root, token, user)
    code = {f"code_base/{p.name}": p.read_bytes() for p in sorted(CODE_BASE.glob("*.py"))}
    write_repo(root, "models", f"{user}/hpcwizard-demo-code", {
        "code_base.tar.gz": make_tar(code, gzip_compress=True),
        # One small real package, pinned, from the package index: building the
        # demo environment needs the network exactly as the real recipes do.
        "requirements.txt": f"tqdm=={DEMO_TQDM}\n",
        "README.md": "Demo training code for hpcwizard.\n",
    })
    frames = {f"frames/video{v:02d}/{f:05d}.jpg": bytes([v, f]) * 512 for v in range(4) for f in range(8)}
    write_repo(root, "datasets", f"{user}/hpcwizard-demo-frames", {"frames.tar": make_tar(frames)})
    # Big enough (2 MiB) to be served as an LFS file with a sha256 to verify.
    weights = bytes(range(256)) * (2 * 4096)
    write_repo(root, "models", f"{DEMO_ORG}/tiny-base-model", {
        "config.json": '{"model_type": "tiny-demo", "hidden_size": 8}\n',
        "pytorch_model.bin": weights,
    }, gated="auto", accepted=[user])
    return DemoHub(Path(root), user, token)


def write_token_file(hf_home: Path, token: str) -> Path:
    """Store ``token`` where huggingface_hub looks for it, readable by its owner only."""
    hf_home.mkdir(parents=True, exist_ok=True)
    os.chmod(hf_home, 0o700)
    path = hf_home / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.chmod(path, 0o600)
    return path
