"""`python -m bench [crypto|memory|http|dashboard|all] [--quick]`: run, print the tables, append RESULTS.md."""

import argparse
import sys
import time

from . import common


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, print their tables and append them to bench/RESULTS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=("crypto", "memory", "http", "dashboard", "all"),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: small sizes, few repetitions"
    )
    args = parser.parse_args(argv)

    # Imported here: the crypto part needs no Django, the others set it up in child processes.
    from . import crypto, dashboard, downloads, memory

    parts = {
        "crypto": crypto.run,
        "memory": memory.run,
        "http": downloads.run,
        "dashboard": dashboard.run,
    }
    chosen = list(parts) if args.part == "all" else [args.part]
    facts = common.machine_facts()
    started = time.monotonic()
    tables: list[common.Table] = []
    failed = False
    for name in chosen:
        try:
            part_tables = parts[name](args.quick)
        except Exception as exc:  # report it with the other parts' results, then fail
            failed = True
            part_tables = [
                common.Table(f"{name}: FAILED", ["error"], [[f"{type(exc).__name__}: {exc}"]])
            ]
        for table in part_tables:
            print(table.markdown(), flush=True)
        tables.extend(part_tables)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    seconds = time.monotonic() - started
    common.results_append(command.strip(), facts, tables, seconds)
    common.progress(f"done in {seconds:.0f} s; appended to {common.RESULTS_PATH}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
