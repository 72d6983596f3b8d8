"""Check a workspace for torn or truncated artifacts (checkpoints, result JSON, figures) without loading a model.

    python scripts/verify.py            # this workspace: one line per damaged file and its rebuild command
    python scripts/verify.py PATH       # another one (e.g. a collaborator's after `dvc pull`)

Exit status 1 when anything is damaged. `dvc status` also checks DVC-tracked copies against their recorded hashes.
"""

import argparse
import sys

from giftlab.verify import verify_workspace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=".", help="the workspace (default: here)")
    args = p.parse_args(argv)
    checked, problems = verify_workspace(args.root)
    for line in problems:
        print(line)
    print(f"verify: {checked} artifacts checked, {len(problems)} damaged", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
