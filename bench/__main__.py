"""`python -m bench [PART|all] [--quick]`: run, print the tables, append RESULTS.md, update its summary.

Every part is a module of this package with `run(quick: bool) -> PartResult` (its tables and its
rows of the summary; a plain list of tables is accepted too, contributing no row). A part whose
module is absent on this branch is left out of `all`.
"""

import argparse
import importlib
import importlib.util
import sys
import time

from . import common

# Part name -> module of this package, in the order `all` runs them.
PARTS = {
    "crypto": "crypto",
    "memory": "memory",
    "http": "downloads",
    "scan": "scan",
    "rotation": "rotation",
    "dashboard": "dashboard",
    "report": "report",
    "load": "load",
    "chain": "chain",
}


def parts_available() -> list[str]:
    """Return the parts whose module exists here."""
    return [name for name, module in PARTS.items() if importlib.util.find_spec(f"bench.{module}")]


def part_run(name: str, quick: bool) -> common.PartResult:
    """Run one part and return its result, whatever shape its module returns."""
    module = importlib.import_module(f"bench.{PARTS[name]}")
    result = module.run(quick)
    if isinstance(result, common.PartResult):
        return result
    if isinstance(result, tuple):
        return common.PartResult(*result)
    return common.PartResult(list(result))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, print their tables and append them to bench/RESULTS.md."""
    available = parts_available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", nargs="?", default="all", choices=(*available, "all"))
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: small sizes, few repetitions"
    )
    args = parser.parse_args(argv)

    chosen = available if args.part == "all" else [args.part]
    facts = common.machine_facts()
    started = time.monotonic()
    tables: list[common.Table] = []
    summary: list[common.SummaryRow] = []
    failed = False
    for name in chosen:
        try:
            result = part_run(name, args.quick)
        except Exception as exc:  # report it with the other parts' results, then fail
            failed = True
            result = common.PartResult(
                [common.Table(f"{name}: FAILED", ["error"], [[f"{type(exc).__name__}: {exc}"]])],
                [
                    common.SummaryRow(
                        name, "(the part failed)", "-", f"{type(exc).__name__}", "FAILED"
                    )
                ],
            )
        for table in result.tables:
            print(table.markdown(), flush=True)
        tables.extend(result.tables)
        summary.extend(result.summary)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    seconds = time.monotonic() - started
    # Quick runs are smoke tests: they never replace a row of the summary.
    common.results_append(command.strip(), facts, tables, seconds, None if args.quick else summary)
    print(common.summary_markdown(facts, _rows(summary, facts)), flush=True)
    common.progress(f"done in {seconds:.0f} s; appended to {common.RESULTS_PATH}")
    return 1 if failed else 0


def _rows(summary: list[common.SummaryRow], facts: list[str]) -> dict[str, list[list[str]]]:
    date = facts[0].removeprefix("Date: ").split(" ")[0]
    rows: dict[str, list[list[str]]] = {}
    for row in summary:
        rows.setdefault(row.part, []).append(row.cells(date))
    return rows


if __name__ == "__main__":
    sys.exit(main())
