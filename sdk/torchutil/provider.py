"""TorchProvider: the load / measure / unload life cycle every torch-based provider shares.

A subclass says which torch modules make up its model (:meth:`_modules`), how to build them
(:meth:`_build`) and how to let go of them (:meth:`_drop`); this class resolves the device and
dtype, measures what loading took, maps load failures to Loom errors and frees the memory on
unload. torch is imported by :meth:`load`, never when the provider module is imported.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, ClassVar

import msgspec

from .. import (
    ConfigError,
    LoomError,
    ModelSpec,
    OutOfMemory,
    Provider,
    ProviderError,
)
from .sources import Source, load_failure, resolve_source, weights_bytes


class TorchProvider(Provider, abc.ABC):
    """Base class of the transformers, diffusers and openclip providers."""

    local: ClassVar[bool] = True
    #: Seeded sampling, greedy descriptions and beam search repeat exactly for the same request.
    deterministic: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if not isinstance(spec.options, self.Options):
            try:
                self.options = msgspec.convert(spec.options or {}, self.Options)
            except msgspec.ValidationError as e:
                raise ConfigError(f"model {spec.id!r}: {e}") from None
        #: Held while the model runs: one generation at a time, and unload waits for it.
        self._lock = threading.RLock()
        self._device: str | None = None
        self._dtype: Any = None
        self._held = 0

    # --- what subclasses provide ----------------------------------------------------------------

    def _import_runtime(self) -> None:
        """Import the heavy libraries (before measuring, so imports do not count as the model)."""
        import torch  # noqa: F401

    def _prepare(self) -> None:
        """Import what loading this model will import (its architecture's modules), before the
        memory is measured; best effort, the load that follows reports any real problem."""

    @abc.abstractmethod
    def _build(self, device: str, dtype: Any) -> None:
        """Load the model's weights onto ``device`` in ``dtype``."""

    def _modules(self) -> list[Any]:
        """The torch modules that make up the loaded model (for the tensor-bytes floor)."""
        return []

    def _drop(self) -> None:
        """Forget every reference to the loaded model."""

    # --- sources ----------------------------------------------------------------------------------

    def source(self, ref: str | None = None) -> Source:
        options = self.options
        return resolve_source(
            ref or options.model,
            provider=self.name,
            model_id=self.spec.id,
            cache_dir=getattr(options, "cache_dir", None),
            revision=getattr(options, "revision", None),
        )

    # --- memory -----------------------------------------------------------------------------------

    def estimate_bytes(self) -> int:
        try:
            return weights_bytes(self.source(), getattr(self.options, "revision", None))
        except LoomError:
            return 0

    def memory_bytes(self) -> int:
        return self._held if self._device is not None else self.estimate_bytes()

    # --- life cycle -------------------------------------------------------------------------------

    def load(self, device: str) -> None:
        from . import devices, memory

        self._import_runtime()
        self._prepare()
        device = devices.resolve_device(device)
        dtype = devices.resolve_dtype(self.spec.dtype, device)
        if device == "cpu":
            devices.set_cpu_threads(self.spec.threads)
        with self._lock:
            meter = memory.MemoryMeter(device)
            try:
                self._build(device, dtype)
            except BaseException as e:
                self._drop()
                memory.release(device)
                if isinstance(e, LoomError) or not isinstance(e, Exception):
                    raise
                raise self._load_error(e) from e
            self._device, self._dtype = device, dtype
            self._held = max(meter.held(), memory.tensor_bytes(self._modules()))

    def unload(self) -> None:
        from . import memory

        with self._lock:
            device, self._device = self._device, None
            self._drop()
            self._held = 0
        memory.release(device)

    def _load_error(self, e: Exception) -> LoomError:
        import torch

        if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
            return OutOfMemory(f"{self.name}: out of memory loading model {self.spec.id!r}: {e}")
        try:
            source = self.source()
        except LoomError as missing:
            return missing
        return load_failure(e, source, provider=self.name, model_id=self.spec.id)

    def loaded_device(self) -> str:
        """The device the model is on; ProviderError if it is not loaded."""
        if self._device is None:
            raise ProviderError(f"{self.name}: model {self.spec.id!r} is not loaded")
        return self._device
