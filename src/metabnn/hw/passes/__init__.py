"""FINN-side graph passes of the build, one Transformation per module (qonnx style)."""

from metabnn.hw.passes.apply_folding import ApplyFolding
from metabnn.hw.passes.check_hw_mapping import CheckHWMapping
from metabnn.hw.passes.detach_host_tail import DetachHostTail
from metabnn.hw.passes.integer_pixel_input import IntegerPixelInput
from metabnn.hw.passes.round_thresholds_to_accumulator import RoundThresholdsToAccumulator
from metabnn.hw.passes.set_runtime_writeable import SetRuntimeWriteable
from metabnn.hw.passes.set_task_parameters import SetTaskParameters

__all__ = ["ApplyFolding", "CheckHWMapping", "DetachHostTail", "IntegerPixelInput",
           "RoundThresholdsToAccumulator", "SetRuntimeWriteable", "SetTaskParameters"]
