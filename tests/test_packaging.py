"""The wheel's package list is written by hand (studies/ is mapped in as ado_ray.studies):
it must name every subpackage on disk, or an install would silently lack one."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_list_names_every_subpackage_and_the_studies():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "ado_ray").rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk | {"ado_ray.studies"}
    assert config["package-dir"]["ado_ray.studies"] == "studies"
    assert sorted((ROOT / "studies").glob("*.yaml")), "no study would ship"
