"""An OCI distribution registry in this process, as an httpx transport (`Targets(transport=...)`): blobs
(HEAD, GET with Range, monolithic and chunked uploads, cross-repository mounts), manifests by tag and digest,
tag listing and deletion, and the referrers API. Digests are checked as a real registry checks them, so
api-level tests that need a registry's semantics but not its process (or its latency) can use it; tests of
the wire itself keep the real registry (tests/fixtures/registry.py)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field

import httpx

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_NAME = r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
_BLOB = re.compile(rf"^/v2/{_NAME}/blobs/(?P<digest>sha256:[a-f0-9]{{64}})$")
_UPLOADS = re.compile(rf"^/v2/{_NAME}/blobs/uploads/$")
_UPLOAD = re.compile(rf"^/v2/{_NAME}/blobs/uploads/(?P<id>[a-f0-9-]+)$")
_MANIFEST = re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[^/]+)$")
_TAGS = re.compile(rf"^/v2/{_NAME}/tags/list$")
_REFERRERS = re.compile(rf"^/v2/{_NAME}/referrers/(?P<digest>sha256:[a-f0-9]{{64}})$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]})


@dataclass
class _Repository:
    blobs: set[str] = field(default_factory=set)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> (raw, media type)
    tags: dict[str, str] = field(default_factory=dict)


class MemoryRegistry(httpx.BaseTransport):
    """Every host it is asked for is this one registry; `requests` counts what was asked (method, path)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.repositories: dict[str, _Repository] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        with self._lock:
            self.requests.append((request.method, request.url.path))
            return self._route(request, body)

    def _repo(self, name: str) -> _Repository:
        return self.repositories.setdefault(name, _Repository())

    def _route(self, request: httpx.Request, body: bytes) -> httpx.Response:
        path, method = request.url.path, request.method
        if path == "/v2/":
            return httpx.Response(200, json={})
        if m := _BLOB.match(path):
            return self._blob(request, m["name"], m["digest"])
        if m := _UPLOADS.match(path):
            return (
                self._start_upload(request, m["name"], body)
                if method == "POST"
                else _error(405, "UNSUPPORTED", method)
            )
        if m := _UPLOAD.match(path):
            return self._upload(request, m["name"], m["id"], body)
        if m := _MANIFEST.match(path):
            return self._manifest(request, m["name"], m["ref"], body)
        if (m := _TAGS.match(path)) and method == "GET":
            tags = sorted(self.repositories[m["name"]].tags) if m["name"] in self.repositories else None
            if tags is None:
                return _error(404, "NAME_UNKNOWN", m["name"])
            return httpx.Response(200, json={"name": m["name"], "tags": tags})
        if (m := _REFERRERS.match(path)) and method == "GET":
            return self._referrers(request, m["name"], m["digest"])
        return _error(404, "UNSUPPORTED", f"{method} {path}")

    def _blob(self, request: httpx.Request, name: str, digest: str) -> httpx.Response:
        repo = self._repo(name)
        if digest not in repo.blobs:
            return _error(404, "BLOB_UNKNOWN", digest)
        data = self.blobs[digest]
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(data))})
        if request.method == "DELETE":
            repo.blobs.discard(digest)
            return httpx.Response(202)
        wanted = request.headers.get("range")
        if wanted and (r := re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)):
            start = int(r[1])
            end = int(r[2]) + 1 if r[2] else len(data)
            if start >= len(data):
                return httpx.Response(416)
            part = data[start:end]
            content_range = f"bytes {start}-{start + len(part) - 1}/{len(data)}"
            return httpx.Response(206, headers={**headers, "Content-Range": content_range}, content=part)
        return httpx.Response(200, headers=headers, content=data)

    def _start_upload(self, request: httpx.Request, name: str, body: bytes) -> httpx.Response:
        repo = self._repo(name)
        mount, source = request.url.params.get("mount"), request.url.params.get("from")
        if mount and source and mount in self.blobs and mount in self._repo(source).blobs:
            repo.blobs.add(mount)
            return httpx.Response(201, headers={"Location": f"/v2/{name}/blobs/{mount}"})
        if digest := request.url.params.get("digest"):
            return self._commit(name, bytearray(body), digest)
        upload = str(uuid.uuid4())
        self.uploads[upload] = (name, bytearray(body))
        return self._session(name, upload)

    def _session(self, name: str, upload: str) -> httpx.Response:
        held = len(self.uploads[upload][1])
        headers = {"Location": f"/v2/{name}/blobs/uploads/{upload}", "Docker-Upload-UUID": upload}
        if held:
            headers["Range"] = f"0-{held - 1}"
        return httpx.Response(202, headers=headers)

    def _upload(self, request: httpx.Request, name: str, upload: str, body: bytes) -> httpx.Response:
        if upload not in self.uploads or self.uploads[upload][0] != name:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", upload)
        if request.method == "DELETE":
            del self.uploads[upload]
            return httpx.Response(204)
        if request.method == "GET":
            response = self._session(name, upload)
            return httpx.Response(204, headers=response.headers)
        held = self.uploads[upload][1]
        if request.method == "PATCH":
            given = request.headers.get("content-range")
            if given and int(given.split("-")[0]) != len(held):
                return httpx.Response(416, headers={"Range": f"0-{len(held) - 1}"})
            held.extend(body)
            return self._session(name, upload)
        if request.method == "PUT":
            held.extend(body)
            del self.uploads[upload]
            return self._commit(name, held, request.url.params.get("digest", ""))
        return _error(405, "UNSUPPORTED", request.method)

    def _commit(self, name: str, data: bytearray, digest: str) -> httpx.Response:
        if _digest(bytes(data)) != digest:
            return _error(400, "DIGEST_INVALID", f"the upload does not hash to {digest}")
        self.blobs[digest] = bytes(data)
        self._repo(name).blobs.add(digest)
        return httpx.Response(
            201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    def _manifest(self, request: httpx.Request, name: str, ref: str, body: bytes) -> httpx.Response:
        repo = self._repo(name)
        if request.method == "PUT":
            return self._put_manifest(request, name, repo, ref, body)
        digest = ref if ref.startswith("sha256:") else repo.tags.get(ref)
        if digest is None or digest not in repo.manifests:
            return _error(404, "MANIFEST_UNKNOWN", ref)
        if request.method == "DELETE":
            if ref == digest:
                del repo.manifests[digest]
                repo.tags = {t: d for t, d in repo.tags.items() if d != digest}
            else:
                del repo.tags[ref]
            return httpx.Response(202)
        raw, media_type = repo.manifests[digest]
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type}
        if request.method == "HEAD":
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(raw))})
        return httpx.Response(200, headers=headers, content=raw)

    def _put_manifest(
        self, request: httpx.Request, name: str, repo: _Repository, ref: str, body: bytes
    ) -> httpx.Response:
        digest = _digest(body)
        if ref.startswith("sha256:") and ref != digest:
            return _error(400, "DIGEST_INVALID", f"the manifest does not hash to {ref}")
        doc = json.loads(body)
        named = [doc.get("config")] if doc.get("config") else []
        missing = [d["digest"] for d in [*named, *doc.get("layers", [])] if d["digest"] not in repo.blobs]
        if missing:
            return _error(400, "MANIFEST_BLOB_UNKNOWN", missing[0])
        children = [d["digest"] for d in doc.get("manifests", [])]
        if any(c not in repo.manifests for c in children):
            return _error(400, "MANIFEST_UNKNOWN", "an index names a manifest this repository lacks")
        repo.manifests[digest] = (body, request.headers.get("content-type", doc.get("mediaType", "")))
        if not ref.startswith("sha256:"):
            repo.tags[ref] = digest
        headers = {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"}
        if doc.get("subject"):
            headers["OCI-Subject"] = doc["subject"]["digest"]
        return httpx.Response(201, headers=headers)

    def _referrers(self, request: httpx.Request, name: str, digest: str) -> httpx.Response:
        wanted = request.url.params.get("artifactType")
        found = []
        for d, (raw, media_type) in self._repo(name).manifests.items():
            doc = json.loads(raw)
            if (doc.get("subject") or {}).get("digest") != digest:
                continue
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if wanted and kind != wanted:
                continue
            entry = {"mediaType": media_type, "digest": d, "size": len(raw), "artifactType": kind}
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            found.append(entry)
        headers = {"Content-Type": OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        return httpx.Response(200, headers=headers, content=json.dumps(index).encode())
