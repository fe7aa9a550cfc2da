"""The interface every accelerator backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Backend(ABC):
    name = "?"

    @abstractmethod
    def open(self, pkg: Any) -> None:
        """Connect to (or program) the accelerator of deployment package ``pkg``."""

    @abstractmethod
    def write_words(self, mem: int, offset: int, words: np.ndarray) -> None:
        """Write uint32 ``words`` into memory ``mem`` (manifest layer index) from word ``offset``."""

    @abstractmethod
    def read_words(self, mem: int, offset: int, n: int) -> np.ndarray:
        """Read ``n`` uint32 words of memory ``mem`` from word ``offset``."""

    @abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 images [N, D] -> the last layer's raw integer outputs, int64 [N, C]."""

    @abstractmethod
    def flush(self) -> None:
        """Make written weights take effect (FINN: one dummy inference)."""

    def close(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}
