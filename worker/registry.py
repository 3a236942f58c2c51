"""Step functions: ``@step("name")`` registers ``fn(ctx, **inputs) -> dict``.

Workers import the modules listed in CAIRN_STEP_MODULES so their decorators run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from worker.errors import ConfigurationError, UnknownStep

StepFunction = Callable[..., dict[str, Any] | None]


class StepRegistry:
    """Names to step functions, for one process."""

    def __init__(self) -> None:
        self._functions: dict[str, StepFunction] = {}
        self._names: frozenset[str] = frozenset()

    def step(self, name: str) -> Callable[[StepFunction], StepFunction]:
        """Decorator: register the function under ``name``."""

        def register(fn: StepFunction) -> StepFunction:
            existing = self._functions.get(name)
            if existing is not None and existing is not fn:
                same = (existing.__module__, existing.__qualname__) == (
                    fn.__module__,
                    fn.__qualname__,
                )
                if not same:  # a module imported twice re-registers itself: fine
                    raise ConfigurationError(
                        f"step name {name!r} is registered twice: "
                        f"{existing.__module__}.{existing.__qualname__} and "
                        f"{fn.__module__}.{fn.__qualname__}"
                    )
            self._functions[name] = fn
            self._names = frozenset(self._functions)
            return fn

        return register

    def get(self, name: str) -> StepFunction:
        """The function registered as ``name``; :class:`UnknownStep` otherwise."""
        try:
            return self._functions[name]
        except KeyError:
            raise UnknownStep(
                f"no step function is registered as {name!r} in this worker; "
                "add its module to CAIRN_STEP_MODULES"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def names(self) -> frozenset[str]:
        """Every registered name (kept, not built per call: a completion asks it)."""
        return self._names

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import each module so its ``@step`` functions register."""
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import step module {module!r} (CAIRN_STEP_MODULES): {exc}"
                ) from None


#: The registry the ``@step`` decorator writes to.
registry = StepRegistry()
step = registry.step

__all__ = ["StepFunction", "StepRegistry", "registry", "step"]
