"""The EXPORT dir's manifest and the checks a later stage (or a second export) makes on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metabnn.atomic import file_digest
from metabnn.errors import MetabnnError

ARTIFACT = "metabnn-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL = "model.onnx"
PARAMETERS = "parameters.npz"
TASKS = "tasks.json"
VERIFY = "verify.json"


def sha256_file(path: Path) -> str:
    return file_digest(path)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that holds anything (another export or foreign files)."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise MetabnnError(f"'{out_dir}' exists and is not a directory; choose another --out")
    if (out_dir / MANIFEST).is_file():
        try:
            artifact = json.loads((out_dir / MANIFEST).read_text()).get("artifact")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            artifact = None
        if artifact == ARTIFACT:
            raise MetabnnError(f"'{out_dir}' already holds an export; choose another --out "
                               "or delete it to export again")
    if any(out_dir.iterdir()):
        raise MetabnnError(f"'{out_dir}' is not empty; choose a new or empty directory for --out")


def read_manifest(export_dir: Path) -> dict[str, Any]:
    """The manifest of an EXPORT dir, after checking it is one and its files are intact."""
    export_dir = Path(export_dir)
    try:
        manifest = json.loads((export_dir / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise MetabnnError(f"'{export_dir}' holds no {MANIFEST}; give an EXPORT_DIR made by 'metabnn export'") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise MetabnnError(f"'{export_dir / MANIFEST}' is unreadable ({type(e).__name__}); "
                           "export the run again") from None
    if not isinstance(manifest, dict) or manifest.get("artifact") != ARTIFACT:
        raise MetabnnError(f"'{export_dir}' is not a metabnn export; give an EXPORT_DIR made by 'metabnn export'")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise MetabnnError(f"export '{export_dir}' has format version {manifest.get('format_version')}, this "
                           f"metabnn reads {FORMAT_VERSION}; export the run again with this metabnn")
    for name, digest in manifest.get("files", {}).items():
        path = export_dir / name
        if not path.is_file() or sha256_file(path) != digest:
            raise MetabnnError(f"'{path}' is missing or changed since the export (sha256 mismatch); "
                               "export the run again")
    return manifest
