"""Brevitas -> QONNX (Brevitas' own exporter), qonnx cleanup, and per-task BN substitution.

The exported graph: ``global_in`` float32 [1, D] holding ``uint8 pixels / 255`` (for an
8-bit model the first node is Quant(scale 1/255, zero point 0, 8 bit, unsigned), which
turns p/255 back into the exact grid value), then per layer BipolarQuant(hidden weight)
-> Gemm -> BatchNormalization -> BipolarQuant (hidden layers), and ``global_out`` [1, C]:
the output layer's BatchNorm, i.e. the logits. The BatchNormalization nodes carry the
first task's statistics; ``with_task_parameters`` substitutes another task's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import torch
from torch import nn

from metabnn.errors import MetabnnError
from metabnn.train.batchnorm_state import using_bn_state

# ONNX BatchNormalization inputs after X, and the parameters.npz arrays that fill them
BN_INPUTS = (("scale", "gamma"), ("bias", "beta"), ("mean", "mean"), ("var", "var"))


@contextlib.contextmanager
def _quiet():
    """Brevitas/torch.onnx print progress lines and warnings; keep the CLI's output clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_qonnx_model(model: nn.Module, bn_state: Mapping[str, Any], input_dim: int):
    """The cleaned-up QONNX ModelWrapper of ``model`` with ``bn_state`` loaded (eval mode)."""
    with _quiet():  # brevitas.export warns about optional packages on import
        from brevitas.export import export_qonnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model

    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="metabnn-qonnx-") as tmp, _quiet():
            raw = Path(tmp) / "raw.onnx"
            with using_bn_state(model, bn_state), torch.no_grad():
                export_qonnx(model, input_t=torch.zeros(1, input_dim), export_path=str(raw))
            wrapper = ModelWrapper(str(raw))
            wrapper = cleanup_model(wrapper)
    except MetabnnError:
        raise
    except Exception as e:  # the exporter raises many types; name it for a bug report
        raise MetabnnError(f"Brevitas' QONNX export failed ({type(e).__name__}: {str(e)[:200]}); "
                           "the model or the installed brevitas/onnx versions are not the tested ones "
                           "(reinstall with: make install)") from None
    finally:
        model.train(was_training)
    return wrapper


def bn_nodes(wrapper) -> list[dict[str, Any]]:
    """The BatchNormalization nodes in graph order: name, epsilon and initializer names."""
    out = []
    for node in wrapper.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        info: dict[str, Any] = {"node": node.name}
        for (role, _), name in zip(BN_INPUTS, node.input[1:5]):
            if wrapper.get_initializer(name) is None:
                raise MetabnnError(f"exported BatchNorm node {node.name} has no constant '{role}'; "
                                   "the QONNX export is not the expected one")
            info[role] = name
        eps = [a.f for a in node.attribute if a.name == "epsilon"]
        info["epsilon"] = float(eps[0]) if eps else 1e-5
        out.append(info)
    return out


def with_task_parameters(wrapper, params: Mapping[str, np.ndarray], task: int,
                         layers: list[dict[str, Any]] | None = None):
    """A copy of ``wrapper`` whose BatchNorm initializers hold task ``task``'s statistics."""
    n_tasks = int(params["n_tasks"])
    if not 0 <= task < n_tasks:
        raise MetabnnError(f"task index {task} is outside 0..{n_tasks - 1}; the export holds {n_tasks} tasks")
    model = copy_model(wrapper)
    layers = bn_nodes(model) if layers is None else layers
    for l, info in enumerate(layers):
        for role, key in BN_INPUTS:
            value = np.asarray(params[f"bn{l}_{key}"][task], dtype=np.float32)
            if model.get_initializer(info[role]).shape != value.shape:
                raise MetabnnError(f"BatchNorm node {info['node']} '{role}' has shape "
                                   f"{model.get_initializer(info[role]).shape}, task parameters {value.shape}; "
                                   "model.onnx and parameters.npz come from different exports")
            model.set_initializer(info[role], value)
    return model


def copy_model(wrapper):
    from qonnx.core.modelwrapper import ModelWrapper

    clone = onnx.ModelProto()
    clone.CopyFrom(wrapper.model)
    return ModelWrapper(clone)


def with_batch_size(wrapper, batch: int):
    """A copy of ``wrapper`` taking ``batch`` images at once (qonnx nodes are batch-agnostic)."""
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    return copy_model(wrapper).transform(ChangeBatchSize(batch)).transform(InferShapes())


def as_float64(wrapper):
    """A copy of ``wrapper`` computing in float64 (initializers and tensor types).

    Verification runs this copy: in float32 the first layer's inputs p * (1/255) round, and
    a pre-activation within ~0.01 (integer units) of a threshold may land on either side,
    in PyTorch as in any other float32 executor. In float64 the error is ~1e-12.
    """
    from onnx import TensorProto

    model = copy_model(wrapper)
    for name in [init.name for init in model.graph.initializer]:
        value = model.get_initializer(name)
        if value.dtype == np.float32:
            model.set_initializer(name, value.astype(np.float64))
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


@contextlib.contextmanager
def float64_quant_execution():
    """qonnx's Quant op casts its result to float32; keep float64 while this is active."""
    from qonnx.custom_op.general import intquant

    original = intquant.IntQuant.execute_node

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = context[node.input[0]]
        if np.asarray(x).dtype != np.float64:
            return original(self, context, graph)
        scale, zeropt, bitwidth = (context[n] for n in node.input[1:4])
        ret = intquant.int_quant(x, scale, zeropt, bitwidth, self.get_nodeattr("signed"),
                                 self.get_nodeattr("narrow"), self.get_nodeattr("rounding_mode"))
        context[node.output[0]] = np.asarray(ret, dtype=np.float64)

    intquant.IntQuant.execute_node = execute_node
    try:
        yield
    finally:
        intquant.IntQuant.execute_node = original
