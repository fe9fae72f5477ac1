"""Bytes the autograd graph holds for backward, counted with saved_tensors_hooks.

Why this probe: on CPU there is no allocator peak to read, and process RSS is dominated by
the framework; the saved-activation bytes are exactly what the adjoint claims to keep flat.
Tensors are deduplicated by storage, so a view or a tensor saved twice counts once.
"""

from __future__ import annotations

import torch


class SavedTensorBytes:
    """Context manager: ``with SavedTensorBytes() as m: loss = ...``; then ``m.bytes``."""

    def __init__(self) -> None:
        self._storages: dict[int, int] = {}
        self._hooks = None

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def _pack(self, tensor: torch.Tensor):
        try:
            storage = tensor.untyped_storage()
            self._storages[storage.data_ptr()] = max(self._storages.get(storage.data_ptr(), 0), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse, meta)
            pass
        return tensor

    @staticmethod
    def _unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
