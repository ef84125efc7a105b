"""A data host on loopback for the download tests: the OSF API, a Figshare article, a plain
HTTP folder with SHA256SUMS and OpenNeuro's GraphQL API, serving files with HTTP Range support,
and faults on demand (a transfer cut after some bytes, a 404, altered bytes)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OSF_PAGE = 2  # listing entries per page, so that pagination is exercised


class Mirror:
    """files: component id -> {path: bytes}. Faults: `cut[path] = n` sends n bytes of the next
    transfer of path, then closes; `missing` paths answer 404; `altered[path] = bytes` are
    served instead of the listed content."""

    def __init__(self):
        self.files: dict[str, dict[str, bytes]] = {}
        self.cut: dict[str, int] = {}
        self.missing: set[str] = set()
        self.altered: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def add(self, component: str, path: str, data: bytes | Path) -> None:
        if isinstance(data, Path):
            data = data.read_bytes()
        self.files.setdefault(component, {})[path] = data

    def mirrors(self, *kinds: str) -> list[dict]:
        """Mirror entries for config download.mirrors, one per kind (osf, figshare, http)."""
        ids = {"raw": "crxs4", "preprocessed": "anp5v", "images": "y63gw"}
        urls = {"osf": f"{self.url}/osf/v2", "figshare": f"{self.url}/figshare/v2",
                "http": f"{self.url}/http"}  # fmt: skip
        return [{"name": f"local-{k}", "type": k, "url": urls[k], "ids": ids} for k in kinds]

    # ---------------------------------------------------------------- listings
    def _osf_listing(self, node: str, folder: str, page: int) -> dict:
        entries = {}
        for path in self.files.get(node, {}):
            rest = path[len(folder) :] if path.startswith(folder) else None
            if rest is None:
                continue
            head, _, tail = rest.partition("/")
            entries[head] = "folder" if tail else "file"
        names = sorted(entries)
        chunk = names[page * OSF_PAGE : (page + 1) * OSF_PAGE]
        data = []
        for name in chunk:
            path = folder + name
            if entries[name] == "folder":
                href = f"{self.url}/osf/v2/nodes/{node}/files/osfstorage/{path}/?page=0"
                data.append({
                    "attributes": {"kind": "folder", "name": name,
                                   "materialized_path": f"/{path}/"},
                    "relationships": {"files": {"links": {"related": {"href": href}}}},
                })  # fmt: skip
            else:
                content = self.files[node][path]
                data.append({
                    "attributes": {
                        "kind": "file", "name": name, "materialized_path": f"/{path}",
                        "size": len(content),
                        "extra": {"hashes": {"md5": hashlib.md5(content).hexdigest(),
                                             "sha256": hashlib.sha256(content).hexdigest()}},
                    },
                    "links": {"download": f"{self.url}/files/{node}/{path}"},
                })  # fmt: skip
        more = (page + 1) * OSF_PAGE < len(names)
        where = f"{self.url}/osf/v2/nodes/{node}/files/osfstorage/{folder}"
        return {"data": data, "links": {"next": f"{where}?page={page + 1}" if more else None}}

    def _figshare_listing(self, article: str) -> list:
        return [
            {"name": path, "size": len(content),
             "computed_md5": hashlib.md5(content).hexdigest(),
             "download_url": f"{self.url}/files/{article}/{path}"}
            for path, content in sorted(self.files.get(article, {}).items())
        ]  # fmt: skip

    def _graphql(self, query: str) -> dict:
        """OpenNeuro's answers, as its server gives them: a snapshot's files one folder at a
        time (`files` the root, `files(tree: <folder id>)` a folder; a file's id its git-annex
        key, a folder's id its tree hash, names without their folder) and a dataset's latest
        snapshot. Anything else: a GraphQL error, as OpenNeuro answers an unknown argument."""
        snap = re.search(
            r'snapshot\(datasetId: "([^"]+)", tag: "([^"]+)"\) \{ files(\(tree: "([0-9a-f]+)"\))? \{',
            query,
        )
        if snap:
            component = f"{snap.group(1)}:{snap.group(2)}"
            if component not in self.files:
                return {"errors": [{"message": f"snapshot {component} not found"}]}
            trees = {hashlib.sha1(d.encode()).hexdigest(): d for p in self.files[component]
                     for d in ("/".join(p.split("/")[:i]) for i in range(1, p.count("/") + 1))}  # fmt: skip
            folder = trees.get(snap.group(4), "") if snap.group(4) else ""
            if snap.group(4) and not folder:
                return {"errors": [{"message": "tree not found"}]}
            start = f"{folder}/" if folder else ""
            entries = {}
            for p, c in self.files[component].items():
                if not p.startswith(start):
                    continue
                head, _, tail = p[len(start) :].partition("/")
                if tail:
                    d = start + head
                    entries[head] = {"id": hashlib.sha1(d.encode()).hexdigest(), "filename": head,
                                     "size": 0, "directory": True, "urls": []}  # fmt: skip
                else:
                    entries[head] = {
                        "id": f"SHA256E-s{len(c)}--{hashlib.sha256(c).hexdigest()}{Path(p).suffix}",
                        "filename": head, "size": str(len(c)), "directory": False,
                        "annexed": None, "urls": [f"{self.url}/files/{component}/{p}"],
                    }  # fmt: skip
            return {"data": {"snapshot": {"files": [entries[k] for k in sorted(entries)]}}}
        latest = re.search(r'dataset\(id: "([^"]+)"\) \{ latestSnapshot \{ tag \} \}', query)
        if not latest:
            return {"errors": [{"message": "Unknown argument or field in query"}]}
        tags = sorted(
            c.partition(":")[2] for c in self.files if c.startswith(f"{latest.group(1)}:")
        )
        return {"data": {"dataset": {"latestSnapshot": {"tag": tags[-1]}}}}

    def _sums(self, folder: str) -> str:
        return "".join(
            f"{hashlib.sha256(c).hexdigest()}  {p}\n"
            for p, c in sorted(self.files.get(folder, {}).items())
        )

    # ---------------------------------------------------------------- serving
    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: bytes, ctype="application/octet-stream", extra=()):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mirror.requests.append((self.path, None))
                if self.path.rstrip("/") != "/crn/graphql":
                    return self._send(404, b"not found", "text/plain")
                answer = json.dumps(mirror._graphql(body["query"])).encode()
                return self._send(200, answer, "application/json")

            def do_GET(self):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                mirror.requests.append((self.path, self.headers.get("Range")))
                if parts[:3] == ["osf", "v2", "nodes"] and parts[4:6] == ["files", "osfstorage"]:
                    folder = "/".join(parts[6:])
                    folder = folder + "/" if folder else ""
                    page = int(query.partition("page=")[2] or 0) if "page=" in query else 0
                    body = json.dumps(mirror._osf_listing(parts[3], folder, page)).encode()
                    return self._send(200, body, "application/json")
                if parts[:3] == ["figshare", "v2", "articles"] and parts[4:] == ["files"]:
                    body = json.dumps(mirror._figshare_listing(parts[3])).encode()
                    return self._send(200, body, "application/json")
                if parts[0] == "http" and parts[-1] == "SHA256SUMS":
                    if parts[1] not in mirror.files:
                        return self._send(404, b"not found", "text/plain")
                    return self._send(200, mirror._sums(parts[1]).encode(), "text/plain")
                if parts[0] in ("files", "http") and len(parts) > 2:
                    return self._file(parts[1], "/".join(parts[2:]))
                return self._send(404, b"not found", "text/plain")

            def _file(self, component: str, rel: str):
                content = mirror.files.get(component, {}).get(rel)
                if content is None or rel in mirror.missing:
                    return self._send(404, b"not found", "text/plain")
                content = mirror.altered.get(rel, content)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(content):
                        return self._send(416, b"", "text/plain")
                body = content[start:]
                cut = mirror.cut.pop(rel, None)
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    last = len(content) - 1
                    self.send_header("Content-Range", f"bytes {start}-{last}/{len(content)}")
                self.end_headers()
                if cut is None:
                    self.wfile.write(body)
                    return
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        return Handler


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
