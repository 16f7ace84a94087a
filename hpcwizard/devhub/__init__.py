"""A local server speaking the Hugging Face Hub protocol, for tests and the demo.

No real Hub is reachable from the development machines, so hpcwizard's hub
code and its demo talk to this server instead; the real huggingface_hub
client works against it unchanged. See :mod:`.server` for the endpoints and
test knobs, :mod:`.store` for the folder layout and ``hub.yaml``, and
:mod:`.fixtures` to create repos from code.

    with DevHub(root) as hub:
        HfApi(endpoint=hub.url, token="hf_alice").model_info("owner/name")

Command line (serves until SIGTERM or Ctrl-C)::

    python -m hpcwizard.devhub --root DIR [--port N] [--port-file F]
"""

from __future__ import annotations

from hpcwizard.devhub.fixtures import add_token, configure_repo, make_tar, write_file, write_repo
from hpcwizard.devhub.server import DevHub
from hpcwizard.devhub.store import LFS_THRESHOLD, HubConfigError

__all__ = [
    "LFS_THRESHOLD",
    "DevHub",
    "HubConfigError",
    "add_token",
    "configure_repo",
    "make_tar",
    "write_file",
    "write_repo",
]
