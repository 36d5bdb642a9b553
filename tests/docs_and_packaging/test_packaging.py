"""What a user installs: the wheel holds the library and nothing else, pulls
no spec tooling, and carries the license and the one version.

The wheel is built once per module from the checkout (a few seconds)."""

from __future__ import annotations

import email
import email.message
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import meerkat_runtime
from codegen import render
from codegen.__main__ import main as codegen_main

ROOT = Path(__file__).resolve().parents[2]
SPEC_TOOLING = {"pyyaml", "jinja2", "graphviz"}
NOT_SOURCE = (
    ".git",
    ".venv",
    ".hypothesis",
    "build",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: pip builds in the source tree, and setuptools' build/
    # keeps files since deleted from the source, which would reach the wheel.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    done = subprocess.run(
        [*pip_wheel, "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("meerkat_runtime-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for stop in "<>=!~[ ":
        name = name.split(stop)[0]
    return name.strip().lower()


def test_the_wheel_installs_only_the_library(wheel: zipfile.ZipFile) -> None:
    version = meerkat_runtime.__version__
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"meerkat_runtime", f"meerkat_runtime-{version}.dist-info"}
    names = set(wheel.namelist())
    assert "meerkat_runtime/py.typed" in names
    assert "meerkat_runtime/generated/runtime_control.py" in names
    assert not [n for n in names if "codegen" in n or n.endswith(".j2")]


def test_the_wheel_requires_no_spec_tooling(wheel: zipfile.ZipFile) -> None:
    requires = _metadata(wheel).get_all("Requires-Dist") or []
    runtime = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert runtime == {"msgspec", "rich"}
    spec_extra = {_requirement_name(r) for r in requires if 'extra == "spec"' in r}
    assert spec_extra == SPEC_TOOLING


def test_the_wheel_states_its_license_and_version(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    assert metadata["Version"] == meerkat_runtime.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"
    license_text = next(n for n in wheel.namelist() if n.endswith("licenses/LICENSE"))
    assert b"the meerkat-runtime authors" in wheel.read(license_text)
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert b"meerkat-runtime = meerkat_runtime.cli:main" in wheel.read(entry_points)


# ---------------------------------------------------------------- spec tooling


def test_diagrams_need_no_ruff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_ruff(_source: str, name: str) -> str:
        raise AssertionError(f"diagrams formatted {name} with ruff")

    monkeypatch.setattr(render, "format_python", no_ruff)
    shutil.copytree(ROOT / "spec", tmp_path / "spec")
    assert codegen_main(["diagrams", "--root", str(tmp_path)]) == 0
    assert "rendered diagrams/policy.svg" in capsys.readouterr().out
    svgs = sorted(p.name for p in (tmp_path / "diagrams").iterdir())
    assert svgs == [
        "composed.svg",
        "input_lifecycle.svg",
        "policy.svg",
        "runtime_control.svg",
    ]


def test_the_spec_tooling_names_its_missing_extra() -> None:
    # As in an environment without the `spec` extra: importing yaml fails.
    script = (
        "import runpy, sys; sys.modules['yaml'] = None; "
        "runpy.run_module('codegen', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "meerkat-runtime[spec]" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_package_root_names_every_store_and_the_error_root() -> None:
    """``from meerkat_runtime import PostgresRuntimeStore, MeerkatError``
    works, and importing the package still needs no psycopg (the store is
    imported on first use): a process without the extra imports the rest."""
    without_psycopg = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from meerkat_runtime import MeerkatError, RuntimeOwnedError, RuntimeStoreError\n"
        "assert issubclass(RuntimeOwnedError, MeerkatError)\n"
        "assert issubclass(RuntimeStoreError, MeerkatError)\n"
        "try:\n"
        "    from meerkat_runtime import PostgresRuntimeStore\n"
        "except ImportError:\n"
        "    print('no postgres extra')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", without_psycopg],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "no postgres extra\n", done.stderr
    from meerkat_runtime.store.postgres import PostgresRuntimeStore

    assert meerkat_runtime.PostgresRuntimeStore is PostgresRuntimeStore
    assert {"MeerkatError", "PostgresRuntimeStore"} <= set(meerkat_runtime.__all__)
