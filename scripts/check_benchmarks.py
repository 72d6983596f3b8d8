"""Load every benchmark the plan evaluates, as its evaluation job will, before the first job runs (on the login node).

    python scripts/check_benchmarks.py --configfile config/paper.yaml config/site.yaml
    python <clone>/scripts/check_benchmarks.py --directory <workspace> --configfile ...   # a separate workspace

One line per benchmark: the problems kept from the rows read of its file in eval.benchmark_dir (or the hub's
cache), the rows filtered (MMLU-Redux's labels), duplicates dropped and repeats scored, a count that is not the
official set's, and any row resolved by the benchmark's own rule (MMLU-Pro's answer letter). Exit status 1 when a
benchmark does not load (its one-line error is printed) or, with --strict, when a count is not the official one.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from giftlab.cli import ConfigError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", nargs="*", default=[], help="profiles over params.yaml, as given to snakemake")
    p.add_argument("--strict", action="store_true", help="a count other than the official set's fails too")
    p.add_argument("--directory", default=None, help="the workspace, as snakemake's --directory (default: here); "
                   "params.yaml is this script's clone's, as the Snakefile's is")
    args = p.parse_args(argv)
    from giftlab.config import load_config
    from giftlab.evaluation.preflight import check_benchmark_files, describe

    # the loader's warnings (a count off the official one, dropped duplicates) are each row's own line below: once
    logging.getLogger("giftlab.evaluation.benchmarks").setLevel(logging.ERROR)

    params = Path(__file__).resolve().parents[1] / "params.yaml"
    if args.directory and not Path(args.directory).is_dir():
        print(f"check_benchmarks: --directory {args.directory}: no such folder", file=sys.stderr)
        return 2
    try:
        config = load_config(params, *args.configfile)  # config files named from here, as snakemake takes them
        if args.directory:
            os.chdir(args.directory)  # the config's relative paths (eval.benchmark_dir) are the workspace's
        rows = check_benchmark_files(config)
    except ConfigError as exc:
        print(f"check_benchmarks: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(describe(row))
    failed = [r for r in rows if "error" in r or (args.strict and r["report"]["size_matches_official"] is False)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
