"""The stack of the integration tests: ``worker.stack`` with the test steps loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worker.settings import Settings
from worker.stack import Proc
from worker.stack import Stack as _Stack
from worker.stack import stack_env as _stack_env

ROOT = Path(__file__).resolve().parents[2]
STEP_MODULES = "tests.support.steps"

__all__ = ["ROOT", "STEP_MODULES", "Proc", "Stack", "stack_env"]


def stack_env(settings: Settings, step_modules: str = STEP_MODULES) -> dict[str, str]:
    """Environment for a worker or beat process of the tests."""
    return _stack_env(settings, step_modules, ROOT)


@dataclass
class Stack(_Stack):
    """Workers and beats that load the test steps, run from the repository root."""

    step_modules: str = STEP_MODULES
    cwd: Path = ROOT
