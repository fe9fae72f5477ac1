"""The memory figures of one torch training step, meaning the same thing on every device.

``peak_memory_bytes``: the allocator's peak during the step (forward and backward) above what
was allocated when it began.  On CUDA that is ``max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` at the start (``cuda_max_allocated``).
On CPU torch keeps no peak, so it is read from torch's own allocation records: the profiler's
``profile_memory`` events (+bytes at each allocation, -bytes at each free, in order), whose
running sum is the allocated bytes above the start, and its maximum the peak
(``torch_cpu_peak_allocated``).  Either way, a graph that a dynamics builds and frees inside one
evaluation (the CNF's trace) costs its bytes only while it lives.

``held_for_backward_bytes``: the bytes the autograd graph holds when the forward ends -- the
tensors saved for backward by every node reachable from the loss, deduplicated by storage (a
view, or a tensor saved twice, counts once; parameters a node saves count too).  The graph is
walked after the forward, so nothing is hooked into it: transient graphs that an evaluation
built and freed are gone and cannot count, and the forward runs as it does unprobed.  (Saved-
tensor hooks would not do: a hook's wrapper around a node's saved output closes a reference
cycle that keeps transient graphs alive until the garbage collector runs.)

Both probes cost time (the profiler records every operation; the walk visits every node):
a probed step's times are not used in the medians.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Optional

import torch


def held_for_backward(*outputs: torch.Tensor) -> int:
    """Bytes of the distinct storages saved by the autograd graph behind ``outputs``."""
    storages: dict[int, int] = {}
    seen: set[int] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for tensor in _saved_tensors(node):
            try:
                storage = tensor.untyped_storage()
            except (RuntimeError, NotImplementedError):  # tensors without storage (sparse, meta)
                continue
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        stack.extend(fn for fn, _ in node.next_functions)
    return sum(storages.values())


def _saved_tensors(node) -> list:
    """The tensors a graph node saved: built-in nodes expose them as ``_saved_*`` attributes, a
    custom autograd.Function's node as ``saved_tensors``."""
    values = [getattr(node, name) for name in dir(node) if name.startswith("_saved_")]
    if hasattr(node, "saved_tensors"):
        values.append(node.saved_tensors)
    out = []
    for value in values:
        items = value if isinstance(value, (tuple, list)) else (value,)
        out += [v for v in items if isinstance(v, torch.Tensor)]
    return out


class PeakAllocated:
    """``with peak: forward and backward``; then ``peak.bytes``: the allocator's peak above the start."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.bytes: Optional[int] = None
        self._stack = contextlib.ExitStack()
        self._profiler = None
        self._baseline = 0

    def __enter__(self) -> "PeakAllocated":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            from torch.profiler import ProfilerActivity, profile

            with _quiet_stderr():
                self._profiler = self._stack.enter_context(profile(activities=[ProfilerActivity.CPU],
                                                                   profile_memory=True))
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device) - self._baseline)
            return
        with _quiet_stderr():
            self._stack.close()
        if exc[0] is None:
            self.bytes = peak_of_memory_events(self._profiler)


def peak_of_memory_events(profiler) -> int:
    """The maximum running sum of the CPU allocation events a profiler recorded (0: none above
    the start).  Each event is +bytes at an allocation, -bytes at a free, in time order."""
    events = [e for e in profiler.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())  # stable: ties keep the recorded order
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto writes "profiler_start" / "profiler_stop" lines straight to file descriptor 2 at
    every start and stop; they would interleave with the progress bars.  Only those two calls
    run with fd 2 pointed at /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
