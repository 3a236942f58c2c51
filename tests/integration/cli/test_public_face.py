"""The public face ``cairn``: importable from a wheel, and a clear refusal when a user's
module shadows one of cairn's packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT

CAIRN = str(Path(sys.executable).parent / "cairn")


def _run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "PYTHONPATH"))}
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cairn built as a wheel and installed (without its dependencies) into a folder."""
    build, target = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("site")
    source = build / "src"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "cairn.db*"
        ),
    )
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(build),
            str(source),
        ],
        cwd=build,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(build.glob("cairn-*.whl"))
    done = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        cwd=build,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def test_the_public_face_imports_from_a_wheel_with_the_demo_inside(
    wheel_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import cairn, tasks.examples, pathlib;"
        "from cairn import step, StepContext, Client;"
        "print(cairn.__file__);"
        "print((pathlib.Path(tasks.examples.__file__).parent / 'report.yaml').is_file())"
    )
    done = _run([sys.executable, "-c", code], cwd=tmp_path, PYTHONPATH=str(wheel_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    origin, has_demo = done.stdout.split()
    assert Path(origin).is_relative_to(wheel_dir)
    assert has_demo == "True"


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("tasks", lambda p: (p / "tasks.py").write_text("celery_app = None\n")),
        ("db", lambda p: (p / "db").mkdir() or (p / "db" / "__init__.py").write_text("")),
        (
            "worker",
            lambda p: (p / "worker").mkdir() or (p / "worker" / "__init__.py").write_text(""),
        ),
    ],
)
def test_a_shadowing_module_is_named_at_first_use_of_the_face(
    tmp_path: Path, name: str, make: object
) -> None:
    make(tmp_path)  # type: ignore[operator]
    done = _run([sys.executable, "-c", "from cairn import Client"], cwd=tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ShadowedModule" in last
    assert f"your module {name!r} ({tmp_path / name}" in last
    assert "rename yours" in last


def test_the_http_client_imports_none_of_cairns_engine_even_beside_a_tasks_py(
    tmp_path: Path,
) -> None:
    """A service that only talks HTTP may have its own ``tasks.py``: ``cairn.http`` needs
    nothing of cairn's internals, and loads neither Celery nor SQLAlchemy."""
    (tmp_path / "tasks.py").write_text("celery_app = None\n")
    code = (
        "import sys; from cairn.http import HttpClient, ApiError;"
        "heavy = [m for m in ('celery', 'kombu', 'sqlalchemy', 'worker', 'db', 'pydantic')"
        " if m in sys.modules]; print(heavy)"
    )
    done = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["worker"], ["migrate"], ["status", "x"]])
def test_the_cli_refuses_in_one_line_in_a_project_with_its_own_tasks_py(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "tasks.py").write_text("from celery import Celery\ncelery_app = Celery()\n")
    done = _run([CAIRN, *command], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "your module 'tasks'" in lines[0]
    assert str(tmp_path / "tasks.py") in lines[0]
    assert "Traceback" not in done.stderr
