"""Hugging Face hub: which hub (the endpoint), validating a token, the gated-access matrix; file metadata.

No Textual here: the CLI, the TUI workers and the tests all call these. The
token file (where, reading, storing, here and on the login node) is
:mod:`hpcwizard.checks.hftoken`'s; its reading names are re-exported here.

- The token never leaves this module in a printable form: :class:`TokenSource`
  masks it in ``repr``/``str``, and no message built here contains it.
- Which hub: :func:`default_endpoint` is the one rule (an explicit endpoint,
  else ``HF_ENDPOINT`` read at call time, else the real Hub), and the result
  is passed explicitly to every huggingface_hub call, so a DevHub or mirror
  works even when huggingface_hub was imported before ``HF_ENDPOINT`` was set.
- Metadata (:func:`repo_files`) is readable for gated repos without access;
  :func:`check_access` (``auth-check``) is what tells whether files can be downloaded.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

# The token file's reading names, for the callers that know them from here.
from hpcwizard.checks.hftoken import ENV_SOURCE, TokenSource, clean_token, find_token, token_file_path  # noqa: F401
from hpcwizard.errors import UserError

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
DEFAULT_ENDPOINT = "https://huggingface.co"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request that never reached the hub raises."""
    try:  # huggingface_hub >= 2 ships its own fork of httpx
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx
    return (httpx.TransportError, OSError)


def chosen_endpoint(endpoint: str | None = None) -> str | None:
    """The hub the user chose: ``endpoint`` (the app's or a caller's), else
    ``HF_ENDPOINT`` (read now, not at import); None when neither is set."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def default_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to: :func:`chosen_endpoint`, else the real Hub."""
    return chosen_endpoint(endpoint) or DEFAULT_ENDPOINT


def endpoint_env(endpoint: str | None = None) -> dict[str, str] | None:
    """``HF_ENDPOINT`` for a command run elsewhere (the login node's
    hpcwizard), only when the user chose a hub: otherwise that machine's
    own setting (a site mirror) stands."""
    chosen = chosen_endpoint(endpoint)
    return {"HF_ENDPOINT": chosen} if chosen else None


def endpoint_reachable(endpoint: str | None = None, timeout: float = 10.0) -> tuple[bool, str]:
    """Whether the hub answers HTTP at all from here (any status counts), and a short detail."""
    import urllib.error
    import urllib.request

    url = default_endpoint(endpoint) + "/api/whoami-v2"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as reply:
            return True, f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:  # 401 without a token: the hub is there
        return True, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


# -- token -----------------------------------------------------------------------


@dataclass(frozen=True)
class HubUser:
    name: str
    orgs: tuple[str, ...] = ()


def validate_token(token: str, endpoint: str | None = None) -> HubUser:
    """Ask ``whoami`` who the token belongs to; a refused token or unreachable hub is a UserError."""
    ep = default_endpoint(endpoint)
    token = clean_token(token) or ""
    if not token:
        raise UserError("The Hugging Face token is empty", f"create one at {TOKENS_PAGE} and paste it")
    # huggingface_hub brings httpx (~300 modules): imported on the first hub call, not at startup.
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        data = HfApi(endpoint=ep, token=token).whoami(token=token)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise UserError(
                "The Hugging Face token is invalid or expired",
                f"create a new one (a 'read' token is enough) at {TOKENS_PAGE} and log in again",
            ) from None
        raise UserError(
            f"{ep} answered HTTP {status} when checking the token",
            "try again later, or check HF_ENDPOINT points to a Hugging Face Hub",
        ) from None
    except _transport_errors() as exc:
        raise UserError(
            f"Cannot reach the Hugging Face Hub at {ep} ({type(exc).__name__})",
            "check the network or proxy of this machine, or HF_ENDPOINT",
        ) from None
    except ValueError:  # not JSON: something else answers at that address
        raise UserError(f"{ep} does not answer like a Hugging Face Hub", "check HF_ENDPOINT") from None
    orgs = tuple(str(org.get("name")) for org in data.get("orgs") or () if org.get("name"))
    return HubUser(name=str(data.get("name")), orgs=orgs)


# -- access matrix ----------------------------------------------------------------


@dataclass(frozen=True)
class RepoRef:
    repo_id: str
    repo_type: str = "model"  # "model" | "dataset"

    def __post_init__(self) -> None:
        if self.repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type must be 'model' or 'dataset' (got {self.repo_type!r})")

    @property
    def url_path(self) -> str:
        """``owner/name`` for a model, ``datasets/owner/name`` for a dataset (as in Hub URLs)."""
        return self.repo_id if self.repo_type == "model" else f"datasets/{self.repo_id}"

    def page(self, endpoint: str | None = None) -> str:
        """The repo's web page, where its access conditions are accepted."""
        return f"{default_endpoint(endpoint)}/{self.url_path}"

    def __str__(self) -> str:
        return self.url_path


class AccessStatus(str, enum.Enum):
    OK = "ok"
    GATED_NOT_ACCEPTED = "gated_not_accepted"
    AWAITING_APPROVAL = "awaiting_approval"
    MISSING_OR_NO_ACCESS = "missing_or_no_access"
    BAD_TOKEN = "bad_token"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class RepoAccess:
    repo: RepoRef
    status: AccessStatus
    detail: str = ""
    fix: str = ""
    url: str | None = None  # the page to open for the fix, when there is one

    @property
    def ok(self) -> bool:
        return self.status is AccessStatus.OK


def _server_message(exc: HfHubHTTPError) -> str:
    return getattr(exc, "server_message", None) or str(exc)


def check_access(repos: list[RepoRef], token: str | None, endpoint: str | None = None) -> list[RepoAccess]:
    """Can ``token`` download files of each repo? One ``auth-check`` per repo; ``token=None``: anonymous.

    A refused token or an unreachable hub is the same for every repo, so the
    remaining repos get the same answer without more requests.
    """
    ep = default_endpoint(endpoint)
    from huggingface_hub import HfApi  # heavy (httpx): imported on the first hub call, not at startup

    api = HfApi(endpoint=ep, token=token or False)
    results: list[RepoAccess] = []
    shared: RepoAccess | None = None
    for repo in repos:
        if shared is not None:
            results.append(RepoAccess(repo, shared.status, shared.detail, shared.fix, shared.url))
            continue
        access = _check_one(api, repo, token, ep)
        if access.status in (AccessStatus.BAD_TOKEN, AccessStatus.UNREACHABLE):
            shared = access
        results.append(access)
    return results


def _check_one(api: HfApi, repo: RepoRef, token: str | None, ep: str) -> RepoAccess:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError  # see check_access

    page = repo.page(ep)
    kind = repo.repo_type
    try:
        api.auth_check(repo.repo_id, repo_type=repo.repo_type, token=token or False)
    except GatedRepoError as exc:  # before RepositoryNotFoundError: it is a subclass
        message = _server_message(exc)
        if "awaiting a review" in message:
            return RepoAccess(
                repo,
                AccessStatus.AWAITING_APPROVAL,
                f"your request to access {kind} {repo.repo_id} is awaiting a review from its authors",
                f"wait for the authors to approve it (status at {page}), then check again",
                page,
            )
        if not token:
            return RepoAccess(
                repo,
                AccessStatus.GATED_NOT_ACCEPTED,
                f"{kind} {repo.repo_id} is gated and no Hugging Face token is set",
                f"set a token (create one at {TOKENS_PAGE}), then accept the conditions at {page}",
                page,
            )
        return RepoAccess(
            repo,
            AccessStatus.GATED_NOT_ACCEPTED,
            f"{kind} {repo.repo_id} is gated and this account has not accepted its conditions",
            f"open {page} while logged in as this token's user and accept the conditions, then check again",
            page,
        )
    except RepositoryNotFoundError:
        return RepoAccess(
            repo,
            AccessStatus.MISSING_OR_NO_ACCESS,
            f"{kind} {repo.repo_id} does not exist, or is private and this token cannot see it",
            "check the repo id, or use a token of an account that has access to it",
            page,
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            return RepoAccess(
                repo,
                AccessStatus.BAD_TOKEN,
                "the Hugging Face token was refused (invalid or expired)",
                f"create a new token at {TOKENS_PAGE} and log in again",
                TOKENS_PAGE,
            )
        return RepoAccess(
            repo,
            AccessStatus.UNREACHABLE,
            f"{ep} answered HTTP {status} for {kind} {repo.repo_id}",
            "try again later, or check HF_ENDPOINT",
        )
    except _transport_errors() as exc:
        return RepoAccess(
            repo,
            AccessStatus.UNREACHABLE,
            f"cannot reach the Hugging Face Hub at {ep} ({type(exc).__name__})",
            "check the network or proxy of this machine, or HF_ENDPOINT",
        )
    return RepoAccess(repo, AccessStatus.OK)


# -- file metadata ----------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo as the Hub describes it (no download needed)."""

    repo: RepoRef
    path: str
    size: int
    sha256: str | None  # LFS files only
    etag: str | None  # what HEAD /resolve answers: the sha256 for LFS files, the git blob id otherwise
    commit: str | None  # the commit the listing is for: download from it so files match each other
    url: str  # /resolve URL at that commit


def repo_files(
    repo: RepoRef,
    token: str | None,
    endpoint: str | None = None,
    revision: str | None = None,
    patterns: list[str] | None = None,
) -> list[RemoteFile]:
    """Files (sizes, sha256, etags) of ``repo`` at ``revision``, filtered by glob ``patterns``.

    Works for gated repos without access (metadata is public on the Hub).
    """
    ep = default_endpoint(endpoint)
    # huggingface_hub brings httpx (~300 modules): imported on the first hub call, not at startup.
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=ep, token=token or False)
    try:
        info = api.repo_info(
            repo.repo_id, repo_type=repo.repo_type, revision=revision, files_metadata=True, token=token or False
        )
    except RevisionNotFoundError:
        raise UserError(
            f"{repo.repo_type} {repo.repo_id} has no revision {revision!r}", "check the revision in the recipe"
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"{repo.repo_type} {repo.repo_id} does not exist, or is private and this token cannot see it",
            "check the repo id, or use a token of an account that has access to it",
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise UserError(
                "The Hugging Face token is invalid or expired", f"create a new one at {TOKENS_PAGE}"
            ) from None
        raise UserError(f"{ep} answered HTTP {status} for {repo}", "try again later, or check HF_ENDPOINT") from None
    except _transport_errors() as exc:
        raise UserError(
            f"Cannot reach the Hugging Face Hub at {ep} ({type(exc).__name__})",
            "check the network or proxy of this machine, or HF_ENDPOINT",
        ) from None
    commit = info.sha
    siblings = info.siblings or []
    wanted = set(filter_repo_objects([s.rfilename for s in siblings], allow_patterns=patterns))
    files = []
    for sibling in siblings:
        if sibling.rfilename not in wanted:
            continue
        sha256 = sibling.lfs.sha256 if sibling.lfs is not None else None
        size = sibling.size if sibling.size is not None else (sibling.lfs.size if sibling.lfs else 0)
        url = f"{ep}/{repo.url_path}/resolve/{quote(commit or revision or 'main', safe='')}/{quote(sibling.rfilename)}"
        files.append(RemoteFile(repo, sibling.rfilename, size, sha256, sha256 or sibling.blob_id, commit, url))
    return files


def download_size(files: list[RemoteFile]) -> int:
    """Total bytes of ``files`` (for the preflight's free-space and quota check)."""
    return sum(f.size for f in files)
