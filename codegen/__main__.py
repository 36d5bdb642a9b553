"""``python -m codegen {generate,verify,diagrams,check}``.

* generate — validate, model-check, then write meerkat_runtime/generated/ and
  diagrams/*.dot (all or nothing).
* verify   — validate and model-check; print state counts per machine, the
  properties proved (spec/lifecycle.yaml ``properties``) and the composed
  model of spec/composed.yaml with its invariants and scenario witnesses.
* diagrams — validate and model-check, then render each machine's diagram
  (and the policy table's) from the spec to diagrams/*.svg with Graphviz.
  It writes no Python, so it needs neither ruff nor a fresh generate.
* check    — regenerate in memory and fail on any stale, missing or orphaned
  generated file, naming the command that fixes it.

This is the spec tooling of a checkout: run it from the repository root
(``python -m codegen``, or ``make``), with the ``spec`` extra installed.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

try:
    from codegen import checker, compose, diagrams, generate, properties
    from codegen.errors import SpecError
except ModuleNotFoundError as exc:  # PyYAML or Jinja2 missing
    sys.exit(
        f"python -m codegen: error: {exc}: the spec tooling needs the `spec` "
        "extra (pip install 'meerkat-runtime[spec]', or `make install`)"
    )

FIX_COMMAND = "make generate"


def _verify(root: Path) -> bool:
    spec, _ = generate.load(root)
    declared = properties.load_properties(
        root / generate.LIFECYCLE, spec, str(generate.LIFECYCLE)
    )
    ok = True
    for machine in spec.machines:
        result = checker.check_machine(machine, declared[machine.name])
        print(result.report())
        ok = ok and result.ok
    if not (root / compose.COMPOSED).exists():  # a checkout without one
        return ok
    composed = compose.load_composed(
        root / compose.COMPOSED, spec, str(compose.COMPOSED)
    )
    report = compose.explore(composed)
    print(report.report())
    return ok and report.ok


def cmd_verify(root: Path) -> int:
    return 0 if _verify(root) else 1


def cmd_generate(root: Path) -> int:
    if not _verify(root):
        print("model check failed: nothing written", file=sys.stderr)
        return 1
    changed = generate.write(root, generate.outputs(root))
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("generated files are up to date")
    return 0


def cmd_diagrams(root: Path) -> int:
    if not _verify(root):
        print("model check failed: nothing rendered", file=sys.stderr)
        return 1
    spec, table = generate.load(root)
    dots = generate.diagram_outputs(spec, table) | generate.composed_outputs(root, spec)
    for path, text in sorted(dots.items()):
        svg = (root / path).with_suffix(".svg")
        svg.parent.mkdir(parents=True, exist_ok=True)
        diagrams.render_svg(text, svg)
        print(f"rendered {svg.relative_to(root)}")
    return 0


def cmd_check(root: Path) -> int:
    files = generate.outputs(root)
    problems = generate.stale(root, files)
    if not problems:
        print(f"{len(files)} generated files are fresh")
        return 0
    for line in problems:
        print(line, file=sys.stderr)
    for path, text in sorted(files.items()):
        target = root / path
        if target.exists() and target.read_text(encoding="utf-8") != text:
            diff = difflib.unified_diff(
                target.read_text(encoding="utf-8").splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{path} (on disk)",
                f"{path} (from spec)",
            )
            sys.stderr.writelines(list(diff)[:40])
    print(f"generated files are out of date: run `{FIX_COMMAND}`", file=sys.stderr)
    return 1


COMMANDS = {
    "generate": cmd_generate,
    "verify": cmd_verify,
    "diagrams": cmd_diagrams,
    "check": cmd_check,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codegen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args.root)
    except (OSError, RuntimeError) as exc:  # Graphviz's dot or ruff missing
        print(
            f"python -m codegen: error: {args.command} failed: {exc}", file=sys.stderr
        )
        return 1
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(
            f"{len(exc.problems)} problem(s) in the spec: nothing written",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
