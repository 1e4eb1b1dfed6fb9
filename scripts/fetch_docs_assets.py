#!/usr/bin/env python3
"""Refresh the assets of /docs (Swagger UI) and /redoc (ReDoc) shipped in the package.

The docs pages must work in a network with no way out, so the server serves their
JavaScript, CSS and favicon itself, from src/tablehouse/api/docs_assets/. This script takes
them from the npm registry with `npm pack` (npm checks each tarball against the registry's
integrity hash), copies the few files the pages load plus the licences, and writes
manifest.json: each package's exact version and integrity, and each file's SHA-256, which
tests/api/test_docs_pages.py checks. Only this script needs npm; installing, running and
testing Tablehouse do not.

    python3 scripts/fetch_docs_assets.py    # then review and commit docs_assets/

To move to another release, change a version below and run it again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSIONS = {"swagger-ui-dist": "5.36.0", "redoc": "2.5.4"}
# Shipped name: (package, path inside the package's tarball, under package/).
FILES = {
    "swagger-ui-bundle.js": ("swagger-ui-dist", "swagger-ui-bundle.js"),
    "swagger-ui.css": ("swagger-ui-dist", "swagger-ui.css"),
    "favicon.png": ("swagger-ui-dist", "favicon-32x32.png"),
    "swagger-ui-LICENSE": ("swagger-ui-dist", "LICENSE"),
    "swagger-ui-NOTICE": ("swagger-ui-dist", "NOTICE"),
    "swagger-ui-bundle.js.LICENSE.txt": ("swagger-ui-dist", "swagger-ui-bundle.js.LICENSE.txt"),
    "redoc.standalone.js": ("redoc", "bundles/redoc.standalone.js"),
    "redoc-LICENSE": ("redoc", "LICENSE"),
    "redoc.standalone.js.LICENSE.txt": ("redoc", "bundles/redoc.standalone.js.LICENSE.txt"),
}
TARGET = Path(__file__).resolve().parent.parent / "src" / "tablehouse" / "api" / "docs_assets"


def main() -> None:
    if shutil.which("npm") is None:
        sys.exit("npm is needed to refresh the docs assets (and only for that)")
    with tempfile.TemporaryDirectory(prefix="docs-assets-") as scratch:
        folder = Path(scratch)
        packed = {name: _pack(name, version, folder) for name, version in VERSIONS.items()}
        TARGET.mkdir(parents=True, exist_ok=True)
        # The folder holds only what this script writes: a file dropped from FILES goes.
        for old in TARGET.iterdir():
            old.unlink()
        files = {}
        for shipped, (package, inner) in FILES.items():
            with tarfile.open(folder / packed[package]["filename"]) as archive:
                member = archive.extractfile(f"package/{inner}")
                assert member is not None, f"{package} has no {inner}"
                content = member.read()
            (TARGET / shipped).write_bytes(content)
            files[shipped] = {
                "package": package,
                "path": inner,
                "sha256": hashlib.sha256(content).hexdigest(),
            }
    manifest = {
        "packages": {
            name: {"version": VERSIONS[name], "integrity": packed[name]["integrity"]}
            for name in VERSIONS
        },
        "files": files,
    }
    (TARGET / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} files and manifest.json to {TARGET}")


def _pack(name: str, version: str, folder: Path) -> dict[str, str]:
    answer = subprocess.run(
        ["npm", "pack", "--json", f"{name}@{version}"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    (packed,) = json.loads(answer.stdout)
    assert packed["version"] == version, packed["version"]
    return {"filename": packed["filename"], "integrity": packed["integrity"]}


if __name__ == "__main__":
    main()
