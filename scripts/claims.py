"""Rule `claims`: states, claim by claim, whether this run agrees with the paper (results/tables/claims.md)."""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import FigureJob
from giftlab.provenance import write_sidecar
from giftlab.reporting.claims import write_claims


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--rl", nargs="*", default=[], help="post-RL eval summaries")
    p.add_argument("--pre-rl", nargs="*", default=[], help="pre-RL (SFT checkpoint) eval summaries")
    p.add_argument("--consistency", nargs="*", default=[], help="consistency JSONs")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance", help="output: <stem>.provenance.json (config, code version, input hashes)")
    args = p.parse_args(argv)
    config = cli.setup(args)
    job = FigureJob.from_config(config)
    write_claims(args.out, [read_json(f) for f in args.rl], [read_json(f) for f in args.pre_rl],
                 [read_json(f) for f in args.consistency], run_specs=job.run_specs,
                 reasoning_benchmarks=job.reasoning_benchmarks)
    if args.provenance:
        write_sidecar(args.provenance, config, [*args.rl, *args.pre_rl, *args.consistency], [args.out])


if __name__ == "__main__":
    cli.run(main)
