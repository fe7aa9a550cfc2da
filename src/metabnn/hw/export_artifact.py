"""The one place that knows the EXPORT dir's format (written by ``metabnn.export``).

Everything the build needs from an export comes through ``ExportArtifact``: the QONNX
model, the shared binary weights and per-task integer parameters (``parameters.npz``),
the golden reference, and the task specs to rebuild each task's test set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError


@dataclass
class ExportArtifact:
    export_dir: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    params: dict[str, np.ndarray]
    task_specs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        from metabnn.export.manifest import MODEL

        return self.export_dir / MODEL

    @property
    def widths(self) -> list[int]:
        return [int(w) for w in self.params["widths"]]

    @property
    def input_bits(self) -> int:
        return int(self.params["input_bits"])

    @property
    def n_tasks(self) -> int:
        return int(self.params["n_tasks"])

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    def task_name(self, k: int) -> str:
        return str(self.task_specs[k].get("name", k)) if k < len(self.task_specs) else str(k)

    def weights(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s shared binary weights, int8 ±1 [out, in]."""
        return np.asarray(self.params[f"w{layer}"])

    def thresholds(self, layer: int, task: int) -> tuple[np.ndarray, np.ndarray]:
        """(thr, flip) of a hidden layer for one task: +1 iff (a >= thr) XOR flip."""
        return (np.asarray(self.params[f"thr{layer}"][task], dtype=np.int64),
                np.asarray(self.params[f"flip{layer}"][task], dtype=bool))

    def output_affine(self, task: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.params["out_scale"][task]), np.asarray(self.params["out_bias"][task])

    def reference_predict(self, images: np.ndarray, task: int) -> np.ndarray:
        from metabnn.export.reference import reference_predict

        return reference_predict(self.params, images, task)[0]

    def test_set(self, task: int, limit: int | None = None,
                 data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [N, D], labels [N]) of task ``task``'s test set, first ``limit`` images."""
        from metabnn.data import task_from_spec

        t = task_from_spec(self.task_specs[task], data_dir)
        n = len(t.test_x) if limit is None else min(int(limit), len(t.test_x))
        return np.asarray(t.test_x[:n].numpy(), dtype=np.uint8), np.asarray(t.test_y[:n].numpy())


def read_export(export_dir: Path) -> ExportArtifact:
    """The checked EXPORT dir, or a one-line MetabnnError saying why it is not one."""
    from metabnn.export.manifest import MANIFEST, PARAMETERS, TASKS, read_manifest, sha256_file

    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise MetabnnError(f"'{export_dir}' is not a directory; give an EXPORT_DIR made by 'metabnn export'")
    manifest = read_manifest(export_dir)  # checks the artifact kind, version and file checksums
    try:
        with np.load(export_dir / PARAMETERS) as z:
            params = {k: z[k] for k in z.files}
        specs = json.loads((export_dir / TASKS).read_text())["tasks"]
    except (OSError, ValueError, KeyError) as e:
        raise MetabnnError(f"export '{export_dir}' is damaged ({type(e).__name__}); export the run again") from None
    return ExportArtifact(export_dir, manifest, sha256_file(export_dir / MANIFEST), params, specs)
