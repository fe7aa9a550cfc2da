"""Host runtime: deployment package, ``Accelerator`` (reference / sim / pynq backends),
continual learning on a deployed accelerator. Importing it pulls in numpy only."""

from metabnn.runtime.accelerator import Accelerator, InferResult
from metabnn.runtime.package import open_package, write_deploy_manifest

__all__ = ["Accelerator", "InferResult", "open_package", "write_deploy_manifest"]
