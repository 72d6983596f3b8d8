"""Rule `figure2`: top-K token overlap Base→SFT (solid) and SFT→RL (dashed), SFT vs GIFT (paper Figure 2).

Config keys: backbones (default: every backbone in the records), runs (default: sft and every
gift-b*), ci (true: bootstrap bands).
"""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import ReportJob
from giftlab.provenance import write_sidecar
from giftlab.reporting.figures import backbones_in, figure2


def main(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--consistency", nargs="+", required=True,
                   help="results/consistency/<backbone>/<run>/<stage_pair>.json")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--provenance", help="output: <stem>.provenance.json (config, code version, input hashes)")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    records = [read_json(f) for f in args.consistency]
    job = ReportJob.from_config(config)
    backbones = job.backbones or backbones_in(records)
    figure2(records, backbones=backbones, pdf=args.pdf, png=args.png, runs=job.runs,
            run_specs=job.run_specs,
            ci=job.ci)
    if args.provenance:
        write_sidecar(args.provenance, config, args.consistency, [args.pdf, args.png])


if __name__ == "__main__":
    cli.run(main)
