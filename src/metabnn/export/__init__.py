"""Export: a RUN dir's BinaryMLP to QONNX, per-task thresholds, and verification.

EXPORT dir layout:

- ``manifest.json``: artifact "metabnn-export", versions, source run + checkpoint sha256,
  widths, input_bits, the rules (input convention, thresholds, output affine), ``layers``
  (for each BatchNorm layer: torch module, QONNX node name and the names of its
  gamma/beta/mean/var initializers), task summaries, sha256 of every file.
- ``model.onnx``: the cleaned QONNX graph (Brevitas' exporter), BatchNorm of task 0.
- ``parameters.npz``: ``widths``, ``input_bits``, ``n_tasks``; shared ``w{l}`` (int8 ±1
  [out, in]); per task (leading axis = task) ``bn{l}_mean/var/gamma/beta`` (+ scalar
  ``bn{l}_eps``), hidden ``thr{l}`` (int64), ``flip{l}`` (bool), ``thr{l}_popcount`` for
  binary-input layers, output ``out_scale``/``out_bias`` (float32).
- ``tasks.json``: the full task specs (permutations included) to rebuild the test sets.
- ``verify.json``: per task images, agreements and accuracy for QONNX execution and the
  integer reference, against PyTorch.
"""

from metabnn.export.export import export_run, load_parameters, load_task_model
from metabnn.export.qonnx_export import with_task_parameters
from metabnn.export.reference import reference_predict

__all__ = ["export_run", "load_parameters", "load_task_model", "reference_predict", "with_task_parameters"]
