"""Print the requirements of darkroom's extras named in argv[1] ("server,postgres,s3"), one a
line, resolving the extras that name darkroom's own ("darkroom[server]"): the image installs
these in a layer of their own, before the source is copied, so that a change to the code
rebuilds only the last layer."""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
wanted = [name.strip() for name in sys.argv[1].split(",") if name.strip()]
unknown = sorted(set(wanted) - set(extras))
if unknown:
    sys.exit(f"unknown extras {unknown}; pyproject.toml has {sorted(extras)}")
own = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]$")
seen: set[str] = set()
lines: list[str] = list(project["dependencies"])
while wanted:
    extra = wanted.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for requirement in extras[extra]:
        inner = own.match(requirement.replace(" ", ""))
        if inner:
            wanted += inner.group(1).split(",")
        elif requirement not in lines:
            lines.append(requirement)
print("\n".join(lines))
