"""Check a workspace for torn or truncated artifacts (checkpoints, result JSON, figures) without loading a model,
and for outputs made by another config than the current one asks for (giftlab.stale, strict: whatever Snakemake
would rerun).

    python scripts/verify.py            # this workspace: one line per damaged file and its rebuild command
    python scripts/verify.py PATH       # another one (e.g. a collaborator's after `dvc pull`)
    python scripts/verify.py --configfile config/smoke.yaml     # outputs expected from params.yaml + this profile

Exit status 1 when anything is damaged or foreign. Run it before recording outputs (`dvc commit -f`): outputs of
another profile would otherwise be recorded under this params.yaml. `dvc status` also checks DVC-tracked copies
against their recorded hashes.
"""

import argparse
import sys
from pathlib import Path

from giftlab.verify import verify_workspace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=".", help="the workspace (default: here)")
    p.add_argument("--configfile", nargs="*", default=[], help="profiles over params.yaml, as given to snakemake")
    p.add_argument("--params", default=None, help="the params.yaml the workspace was built with (default: the "
                   "workspace's own, else this script's clone's, which a workspace built with `snakemake -s "
                   "<clone>/Snakefile --directory <it>` was built with)")
    args = p.parse_args(argv)
    if args.params and not Path(args.params).is_file():
        print(f"verify: --params {args.params}: no such file", file=sys.stderr)
        return 2
    # the rebuild commands carry the profile the outputs are checked against, and the workspace when it is elsewhere
    # (snakemake looks for its Snakefile here, not in --directory; a workspace apart has none: this clone's)
    where, snakefile = [], Path(args.root) / "Snakefile"
    elsewhere = Path(args.root).resolve() != Path.cwd().resolve()
    if elsewhere or not snakefile.is_file():
        where.append(f"-s {snakefile if snakefile.is_file() else Path(__file__).resolve().parents[1] / 'Snakefile'}")
    if elsewhere:
        where.append(f"--directory {args.root}")
    profile = " ".join([*where, *([f"--configfile {' '.join(args.configfile)}"] if args.configfile else [])])
    checked, problems = verify_workspace(args.root, profile)
    for line in problems:
        print(line)
    root = Path(args.root)
    params = Path(args.params) if args.params else root / "params.yaml"
    if not params.is_file():  # a workspace apart: its Snakefile, this clone's, read the params.yaml beside it
        params = Path(__file__).resolve().parents[1] / "params.yaml"
        print(f"verify: no params.yaml in {root}: checked against {params} (--params names another)", file=sys.stderr)
    if not params.is_file():
        print(f"verify: no params.yaml in {root} or beside this script (--params names one): which config made the "
              "outputs is not checked", file=sys.stderr)
        foreign = None
    else:
        try:
            foreign = foreign_in(root, args.configfile, params)
        except ValueError as exc:  # giftlab.cli.ConfigError: a missing or bad config file, one line
            print(f"verify: {exc}", file=sys.stderr)
            return 2
    damaged = {line.split(": ", 1)[0] for line in problems}
    unchecked = foreign is None
    foreign = [line for line in foreign or [] if str(root / line.split(": ", 1)[0]) not in damaged]  # said once, above
    for line in foreign:
        print(line)
    print(f"verify: {checked} artifacts checked, {len(problems)} damaged; "
          + ("which config made them not checked" if unchecked else f"{len(foreign)} made by another config"),
          file=sys.stderr)
    return 1 if problems or foreign else 0


def foreign_in(root: Path, configfiles: list[str], params: Path | None = None) -> list[str]:
    """Outputs under ``root`` whose recorded job config is not the one ``params`` (default: ``root``'s params.yaml)
    + ``configfiles`` ask for."""
    from giftlab.config import load_config
    from giftlab.plan import Plan
    from giftlab.stale import foreign_outputs

    config = load_config(params or root / "params.yaml", *configfiles)
    return foreign_outputs(Plan(config).recorded_configs(), root, strict=True)


if __name__ == "__main__":
    sys.exit(main())
