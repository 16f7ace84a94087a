"""DevHub: a local HTTP server speaking the Hugging Face Hub protocol.

It answers the requests huggingface_hub 2.4.0 makes (whoami, auth-check,
model/dataset info, revision, tree, paths-info, HEAD/GET resolve) with the
status codes and ``X-Error-Code``/``X-Error-Message`` headers the real Hub
sends, so the real client raises its real exceptions. Repos come from a folder
(see :mod:`hpcwizard.devhub.store`).

Test knobs, settable at construction and at runtime (attributes of DevHub, or
``POST /_devhub/config`` with a JSON object from another process):

- ``range_support`` (bool): when False, ``Range`` is ignored (always 200 + full body);
- ``throttle`` (bytes/second or None): slows every file body;
- ``drop_after`` (bytes or None): closes the connection after that many body bytes
  of each GET (a network cut mid-download);
- ``lfs_redirect`` (bool): like the real Hub, answer ``/resolve`` of an LFS file
  with a 302 to a "CDN" URL on another host name (``cdn_host``, default
  ``localhost``: same server, different host, so clients drop the
  Authorization header as they do for the real CDN). The CDN URL embeds the
  sha256 and stops working (403) once the file changes, like an expired
  signed URL. The 302 carries ``X-Linked-Etag``/``X-Linked-Size``/``X-Repo-Commit``.

Byte counters: :meth:`DevHub.stats` / ``GET /_devhub/stats`` and
:meth:`DevHub.reset_stats` / ``POST /_devhub/reset``. Files are keyed
``models/<owner>/<name>/<path>`` or ``datasets/<owner>/<name>/<path>``.

Request logs (one line each, logger ``hpcwizard.devhub``) name the user a token
maps to, never the token or any header value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from hpcwizard.devhub.store import (
    LFS_THRESHOLD,
    FileEntry,
    HubConfig,
    HubConfigError,
    RepoStore,
    TokenUser,
    commit_sha,
    iso_time,
    repo_key,
    tree_oid,
)

log = logging.getLogger("hpcwizard.devhub")

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_CHUNK = 64 * 1024


class _Unauthorized(Exception):
    """The request carried a token the hub does not know."""


@dataclass
class Knobs:
    range_support: bool = True
    throttle: int | None = None
    drop_after: int | None = None
    lfs_redirect: bool = False


KNOB_NAMES = ("range_support", "throttle", "drop_after", "lfs_redirect")


class Stats:
    """Thread-safe byte and request counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._files: dict[str, int] = {}
            self._requests: dict[str, int] = {}

    def add_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self._total += n
            self._files[key] = self._files.get(key, 0) + n

    def add_request(self, label: str) -> None:
        with self._lock:
            self._requests[label] = self._requests.get(label, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total_bytes": self._total, "files": dict(self._files), "requests": dict(self._requests)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: DevHub) -> None:
        self.hub = hub
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class DevHub:
    """A Hub-protocol server for the repos below ``root``, running in a background thread."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        range_support: bool = True,
        throttle: int | None = None,
        drop_after: int | None = None,
        lfs_redirect: bool = False,
        cdn_host: str = "localhost",
        lfs_threshold: int = LFS_THRESHOLD,
        log_requests: bool = False,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.requested_port = port
        self.store = RepoStore(self.root, lfs_threshold=lfs_threshold)
        self.knobs = Knobs(range_support, throttle, drop_after, lfs_redirect)
        self.cdn_host = cdn_host
        self.stats_counter = Stats()
        self.log_requests = log_requests
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- knobs (runtime-settable) ---------------------------------------------
    @property
    def range_support(self) -> bool:
        return self.knobs.range_support

    @range_support.setter
    def range_support(self, value: bool) -> None:
        self.knobs.range_support = bool(value)

    @property
    def throttle(self) -> int | None:
        return self.knobs.throttle

    @throttle.setter
    def throttle(self, value: int | None) -> None:
        self.knobs.throttle = int(value) if value else None

    @property
    def drop_after(self) -> int | None:
        return self.knobs.drop_after

    @drop_after.setter
    def drop_after(self, value: int | None) -> None:
        self.knobs.drop_after = int(value) if value is not None else None

    @property
    def lfs_redirect(self) -> bool:
        return self.knobs.lfs_redirect

    @lfs_redirect.setter
    def lfs_redirect(self, value: bool) -> None:
        self.knobs.lfs_redirect = bool(value)

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set knobs by name (see KNOB_NAMES); unknown names are refused. Returns all knobs."""
        for name in settings:
            if name not in KNOB_NAMES:
                raise ValueError(f"unknown DevHub knob {name!r}; known: {', '.join(KNOB_NAMES)}")
        for name, value in settings.items():
            setattr(self, name, value)
        return {name: getattr(self, name) for name in KNOB_NAMES}

    # -- counters --------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``{"total_bytes": N, "files": {key: bytes}, "requests": {"GET key": n}}``."""
        return self.stats_counter.snapshot()

    def bytes_sent(self, key: str | None = None) -> int:
        """Body bytes sent in total, or for one file key (``models/owner/name/path``)."""
        snap = self.stats()
        return snap["total_bytes"] if key is None else snap["files"].get(key, 0)

    def reset_stats(self) -> None:
        self.stats_counter.reset()

    # -- lifecycle -------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DevHub is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> DevHub:
        if self._server is not None:
            return self
        self.stopping.clear()
        self.store.config()  # fail early on a malformed hub.yaml
        self._server = _Server((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="devhub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections (including downloads in flight)."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        with server.sockets_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DevHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hpcwizard-devhub"
    timeout = 60  # idle keep-alive connections end eventually
    server: _Server

    # -- plumbing --------------------------------------------------------------
    @property
    def hub(self) -> DevHub:
        return self.server.hub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The stdlib would log the request line only; keep it off and log in _log_request.
        pass

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.hub.log_requests:
            log.warning("%s %s", self.client_address[0], format % args)

    def _log_request(self, status: int, nbytes: int) -> None:
        if self.hub.log_requests:
            log.info('%s "%s %s" %d %dB %s', self.client_address[0], self.command, self.path, status, nbytes, self._who)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._who = "anonymous"
        self._body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self._body = self.rfile.read(length)
        split = urlsplit(self.path)
        self._query = {k.lower(): v for k, v in parse_qs(split.query).items()}
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        try:
            self._route(segments)
        except _Unauthorized:
            self._error(401, INVALID_CREDENTIALS)
        except HubConfigError as exc:
            self._error(500, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self._log_request(status, len(body))

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        extra = {"X-Error-Message": message, **(headers or {})}
        if code:
            extra["X-Error-Code"] = code
        self._json({"error": message}, status, extra)

    @property
    def _endpoint(self) -> str:
        return f"http://{self.headers.get('Host') or f'{self.hub.host}:{self.hub.port}'}"

    def _flag(self, name: str) -> bool:
        values = self._query.get(name.lower())
        return bool(values and values[-1].lower() in ("1", "true", "yes"))

    # -- auth ------------------------------------------------------------------
    def _user(self, config: HubConfig) -> TokenUser | None:
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        user = config.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            self._who = "token=invalid"
            raise _Unauthorized
        self._who = f"user={user.name}"
        return user

    def _repo_gate(self, repo_type: str, repo_id: str, *, for_content: bool) -> TokenUser | None | bool:
        """Answer the access error and return False, or return the user (None: anonymous).

        Metadata of a gated repo is readable by anyone who can see the repo; file
        content (``for_content``) and auth-check need the gate to be passed.
        """
        config = self.hub.store.config()
        user = self._user(config)
        settings = config.settings(repo_type, repo_id)
        owner = repo_id.split("/")[0]
        member = user is not None and (user.name == owner or owner in user.orgs)
        granted = member or (user is not None and user.name in settings.accepted)
        exists = self.hub.store.repo_dir(repo_type, repo_id) is not None
        if not exists or (settings.private and not granted):
            self._error(
                404,
                "Repository not found",
                "RepoNotFound",
            )
            return False
        if for_content and settings.gated and not granted:
            kind = "model" if repo_type == "model" else "dataset"
            page = f"{self._endpoint}/{repo_id if repo_type == 'model' else 'datasets/' + repo_id}"
            if user is None:
                message = (
                    f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                self._error(401, message, "GatedRepo")
            elif user.name in settings.pending:
                message = f"Your request to access {kind} {repo_id} is awaiting a review from the repo authors."
                self._error(403, message, "GatedRepo")
            else:
                message = (
                    f"Access to {kind} {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {page} to ask for access."
                )
                self._error(403, message, "GatedRepo")
            return False
        return user

    # -- routing ---------------------------------------------------------------
    def _route(self, seg: list[str]) -> None:
        method = self.command
        if seg[:1] == ["_devhub"]:
            return self._control(seg[1:])
        if seg[:1] == ["api"]:
            if seg[1:] == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if len(seg) >= 4 and seg[1] in ("models", "datasets"):
                repo_type, repo_id, rest = seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4:]
                if method == "GET" and rest == []:
                    return self._info(repo_type, repo_id, None)
                if method == "GET" and rest == ["auth-check"]:
                    return self._auth_check(repo_type, repo_id)
                if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                    return self._info(repo_type, repo_id, rest[1])
                if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                    return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]).strip("/"))
                if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                    return self._paths_info(repo_type, repo_id, rest[1])
            return self._error(404, "Not Found")
        if method in ("GET", "HEAD"):
            repo_type, rest = ("dataset", seg[1:]) if seg[:1] == ["datasets"] else ("model", seg)
            if len(rest) >= 5 and rest[2] == "resolve":
                return self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        return self._error(404, "Not Found")

    def _control(self, seg: list[str]) -> None:
        if seg == ["stats"] and self.command == "GET":
            return self._json(self.hub.stats())
        if seg == ["reset"] and self.command == "POST":
            self.hub.reset_stats()
            return self._json({"ok": True})
        if seg == ["config"] and self.command == "POST":
            try:
                return self._json(self.hub.configure(**json.loads(self._body or b"{}")))
            except (ValueError, TypeError) as exc:
                return self._error(400, str(exc))
        if len(seg) >= 5 and seg[0] == "cdn" and seg[1] in ("models", "datasets") and self.command in ("GET", "HEAD"):
            return self._cdn(seg[1][:-1], f"{seg[2]}/{seg[3]}", "/".join(seg[4:]))
        return self._error(404, "Not Found")

    # -- API -------------------------------------------------------------------
    def _whoami(self) -> None:
        user = self._user(self.hub.store.config())
        if user is None:
            return self._error(401, INVALID_CREDENTIALS)
        self._json(
            {
                "type": "user",
                "id": _fake_id(user.name),
                "name": user.name,
                "fullname": user.name,
                "email": f"{user.name}@devhub.invalid",
                "emailVerified": True,
                "isPro": False,
                "orgs": [
                    {"type": "org", "id": _fake_id(org), "name": org, "fullname": org, "roleInOrg": "read"}
                    for org in user.orgs
                ],
                "auth": {"type": "access_token", "accessToken": {"displayName": "devhub", "role": "read"}},
            }
        )

    def _auth_check(self, repo_type: str, repo_id: str) -> None:
        if self._repo_gate(repo_type, repo_id, for_content=True) is False:
            return
        self._json({"ok": True})

    def _resolve_revision(self, repo_type: str, repo_id: str, revision: str) -> tuple[list[FileEntry], str] | None:
        files = self.hub.store.files(repo_type, repo_id)
        sha = commit_sha(repo_type, repo_id, files)
        if revision not in ("main", sha):
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return None
        return files, sha

    def _info(self, repo_type: str, repo_id: str, revision: str | None) -> None:
        if self._repo_gate(repo_type, repo_id, for_content=False) is False:
            return
        resolved = self._resolve_revision(repo_type, repo_id, revision or "main")
        if resolved is None:
            return
        files, sha = resolved
        settings = self.hub.store.config().settings(repo_type, repo_id)
        blobs = self._flag("blobs")
        siblings = []
        for entry in files:
            sibling: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                sibling["size"] = entry.size
                sibling["blobId"] = entry.oid
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sibling)
        modified = max((e.mtime for e in files), default=0.0)
        owner = repo_id.split("/")[0]
        data: dict[str, Any] = {
            "_id": _fake_id(f"{repo_type}/{repo_id}"),
            "id": repo_id,
            "author": owner,
            "sha": sha,
            "lastModified": iso_time(modified),
            "createdAt": iso_time(min((e.mtime for e in files), default=0.0)),
            "private": settings.private,
            "gated": settings.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in files),
        }
        if repo_type == "model":
            data["modelId"] = repo_id
        self._json(data)

    def _tree_entries(self, files: list[FileEntry], base: str, recursive: bool) -> list[dict[str, Any]] | None:
        prefix = f"{base}/" if base else ""
        if base and not any(e.path.startswith(prefix) for e in files):
            return None
        dirs: set[str] = set()
        out: list[dict[str, Any]] = []
        for entry in files:
            if not entry.path.startswith(prefix):
                continue
            rest = entry.path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if depth > 1 and not recursive:
                    break
                dirs.add(prefix + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                out.append(_file_json(entry))
        folders = [{"type": "directory", "oid": tree_oid(d, files), "size": 0, "path": d} for d in sorted(dirs)]
        return folders + out

    def _tree(self, repo_type: str, repo_id: str, revision: str, base: str) -> None:
        if self._repo_gate(repo_type, repo_id, for_content=False) is False:
            return
        resolved = self._resolve_revision(repo_type, repo_id, revision)
        if resolved is None:
            return
        entries = self._tree_entries(resolved[0], base, self._flag("recursive"))
        if entries is None:
            return self._error(404, f"{base} does not exist on {revision}", "EntryNotFound")
        self._json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        if self._repo_gate(repo_type, repo_id, for_content=False) is False:
            return
        resolved = self._resolve_revision(repo_type, repo_id, revision)
        if resolved is None:
            return
        files, _ = resolved
        content_type = self.headers.get("Content-Type") or ""
        if "json" in content_type:
            paths = json.loads(self._body or b"{}").get("paths") or []
        else:
            paths = parse_qs(self._body.decode()).get("paths", [])
        by_path = {e.path: e for e in files}
        out: list[dict[str, Any]] = []
        for raw in paths:
            path = str(raw).strip("/")
            if path in by_path:
                out.append(_file_json(by_path[path]))
            elif any(e.path.startswith(path + "/") for e in files):
                out.append({"type": "directory", "oid": tree_oid(path, files), "size": 0, "path": path})
        self._json(out)

    # -- file content ----------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        key = f"{repo_key(repo_type, repo_id)}/{path}"
        self.hub.stats_counter.add_request(f"{self.command} {key}")
        if self._repo_gate(repo_type, repo_id, for_content=True) is False:
            return
        resolved = self._resolve_revision(repo_type, repo_id, revision)
        if resolved is None:
            return
        _, sha = resolved
        entry = self.hub.store.file(repo_type, repo_id, path)
        if entry is None:
            return self._error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{entry.etag}"',
            "Content-Type": "application/octet-stream",
            "Last-Modified": self.date_time_string(int(entry.mtime)),
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        if entry.lfs and self.hub.knobs.lfs_redirect:
            cdn = f"http://{self.hub.cdn_host}:{self.hub.port}/_devhub/cdn/{quote(key)}?sha256={entry.sha256}"
            return self._send(302, {**headers, "Location": cdn})
        self._send_content(entry, key, headers)

    def _cdn(self, repo_type: str, repo_id: str, path: str) -> None:
        """The "CDN" behind lfs_redirect: no auth (the URL is the credential), bound to one sha256."""
        key = f"{repo_key(repo_type, repo_id)}/{path}"
        self.hub.stats_counter.add_request(f"CDN {self.command} {key}")
        if self.headers.get("Authorization"):
            # The real CDN must never see the Hub token; count it so tests can assert it did not come.
            self.hub.stats_counter.add_request(f"CDN AUTH {key}")
        entry = self.hub.store.file(repo_type, repo_id, path)
        wanted = (self._query.get("sha256") or [""])[-1]
        if entry is None or entry.sha256 != wanted:
            return self._error(403, "Request has expired")
        self._send_content(entry, key, {"ETag": f'"{entry.sha256}"', "Content-Type": "application/octet-stream"})

    def _send_content(self, entry: FileEntry, key: str, headers: dict[str, str]) -> None:
        """Headers and (for GET) the body of ``entry``, honouring Range when enabled."""
        if self.hub.knobs.range_support:
            headers["Accept-Ranges"] = "bytes"
        start, end, status = 0, entry.size, 200
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET" and self.hub.knobs.range_support and self._if_range_ok(entry):
            self.hub.stats_counter.add_request(f"RANGE {key}")
            parsed = _parse_range(range_header, entry.size)
            if isinstance(parsed, str):  # "unsatisfiable", the only text _parse_range returns
                headers["Content-Range"] = f"bytes */{entry.size}"
                return self._error(416, "Range Not Satisfiable", None, headers)
            if parsed is not None:
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        sent = 0 if self.command == "HEAD" else self._stream(entry, key, start, end)
        self._log_request(status, sent)

    def _if_range_ok(self, entry: FileEntry) -> bool:
        """``If-Range: "<etag>"`` that no longer matches means: send the whole new file."""
        if_range = self.headers.get("If-Range")
        return if_range is None or if_range.strip().lstrip("W/").strip('"') == entry.etag

    def _stream(self, entry: FileEntry, key: str, start: int, end: int) -> int:
        knobs, stats, stopping = self.hub.knobs, self.hub.stats_counter, self.hub.stopping
        sent = 0
        began = time.monotonic()
        with open(entry.abspath, "rb") as f:
            f.seek(start)
            remaining = end - start
            while remaining > 0 and not stopping.is_set():
                rate = knobs.throttle
                size = min(remaining, _CHUNK if not rate else max(1024, min(_CHUNK, rate // 20)))
                drop = knobs.drop_after
                if drop is not None:
                    size = min(size, max(drop - sent, 0))
                    if size == 0:
                        break
                chunk = f.read(size)
                if not chunk:
                    break  # the file shrank while we were sending it
                self.wfile.write(chunk)
                sent += len(chunk)
                remaining -= len(chunk)
                stats.add_bytes(key, len(chunk))
                if rate:
                    delay = began + sent / rate - time.monotonic()
                    if delay > 0:
                        stopping.wait(delay)
        if remaining > 0:
            # Cut the connection: the client sees a short body, like a network failure.
            self.close_connection = True
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return sent


def _file_json(entry: FileEntry) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
    if entry.lfs:
        data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
    return data


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``bytes=N-``, ``bytes=N-M`` or ``bytes=-K`` → (start, end_exclusive); None: ignore the header."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multiple ranges: answer with the whole file
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return max(size - suffix, 0), size
        start = int(first)
        stop = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or stop <= start:
        return "unsatisfiable"
    return start, min(stop, size)


def _fake_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:24]

