"""Print requirements from pyproject.toml, one a line, resolving the extras that name darkroom's
own ("darkroom[server]"):

    requirements.py EXTRAS               the extras named (e.g. deploy-tests), comma-separated
    requirements.py --image VARIANT      what the image of that variant installs (the
        [--extras EXTRAS] [--build]      Dockerfile's build): darkroom's requirements for the
                                         variant's extras and EXTRAS, the image's own (its
                                         init), and with --build what building darkroom takes
                                         (a wheelhouse for a build without an index)

The image installs these in a layer of its own, before the source is copied, so that a change
to the code rebuilds only the last layer."""

import argparse
import re
import sys
import tomllib
from pathlib import Path

# The extras of each image variant (Dockerfile: --build-arg VARIANT)
VARIANTS = {"cpu": "server,postgres,s3", "cuda": "server,postgres,s3,diffusers"}
# What the image adds: its PID 1, which forwards signals and reaps (a static binary on PyPI)
IMAGE = ["dumb-init==1.2.5.post1"]


def requirements(pyproject: dict, extras: str) -> list[str]:
    project = pyproject["project"]
    table = project["optional-dependencies"]
    wanted = [name.strip() for name in extras.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(table))
    if unknown:
        sys.exit(f"unknown extras {unknown}; pyproject.toml has {sorted(table)}")
    own = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]$")
    seen: set[str] = set()
    lines: list[str] = list(project["dependencies"])
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in table[extra]:
            inner = own.match(requirement.replace(" ", ""))
            if inner:
                wanted += inner.group(1).split(",")
            elif requirement not in lines:
                lines.append(requirement)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="?", default="")
    parser.add_argument("--image", choices=sorted(VARIANTS))
    parser.add_argument("--extras", dest="more", default="")
    parser.add_argument("--build", action="store_true")
    args = parser.parse_args()
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    if args.image is None:
        lines = requirements(pyproject, args.extras)
    else:
        lines = requirements(pyproject, f"{VARIANTS[args.image]},{args.more}") + IMAGE
        if args.build:
            lines += pyproject["build-system"]["requires"]
    print("\n".join(lines))


main()
