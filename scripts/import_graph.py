"""The import graph of src/ between the architecture's parts, as Graphviz DOT (and a PNG when `dot` is
installed): which part imports which, and how many imports each arrow stands for. An arrow that
points up the layers (from a lower part to a higher one) is drawn red.

    python scripts/import_graph.py [SRC_DIR] [--png docs/import-graph.png]

Parts: each package of src/app/ (app.entry, app.endpoints, ...; a flat module of app/ counts as
"app"), and commands, queries, workers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grimp

ROOTS = ("app", "commands", "queries", "workers")
LAYERS = ["app.entry", "app.endpoints", "workers", "app.processes", "commands", "queries", "app.eventlog",
          "app.platform"]  # fmt: skip


def part(module: str, packages: set[str]) -> str:
    """The architecture part a module belongs to."""
    pieces = module.split(".")
    if pieces[0] == "app" and len(pieces) > 1 and f"app.{pieces[1]}" in packages:
        return f"app.{pieces[1]}"
    return pieces[0]


def edges(src: Path) -> Counter[tuple[str, str]]:
    """(importer part, imported part) -> number of module-level imports."""
    sys.path.insert(0, str(src))
    graph = grimp.build_graph(*ROOTS)
    packages = {m for m in graph.modules if m.startswith("app.") and (src / m.replace(".", "/")).is_dir()}
    counted: Counter[tuple[str, str]] = Counter()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = part(importer, packages), part(imported, packages)
            if a != b:
                counted[a, b] += 1
    return counted


def upward(a: str, b: str) -> bool:
    """An import from a lower layer to a higher one (or between parts outside the layers)."""
    if a in LAYERS and b in LAYERS:
        return LAYERS.index(b) < LAYERS.index(a) and {a, b} not in ({"workers", "app.processes"},)
    return a.split(".")[0] == "app" and b in ("commands", "queries", "workers")  # the old kernel importing the sides


def dot(counted: Counter[tuple[str, str]]) -> str:
    lines = ["digraph imports {", "  rankdir=TB; node [shape=box, fontname=Helvetica];"]
    for (a, b), n in sorted(counted.items()):
        colour = ", color=red, fontcolor=red" if upward(a, b) else ""
        lines.append(f'  "{a}" -> "{b}" [label="{n}"{colour}];')
    return "\n".join([*lines, "}"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", nargs="?", default="src", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    text = dot(edges(args.src.resolve()))
    print(text, end="")
    if args.png:
        subprocess.run(["dot", "-Tpng", "-o", str(args.png)], input=text.encode(), check=True)


if __name__ == "__main__":
    main()
