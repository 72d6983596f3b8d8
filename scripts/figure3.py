"""Rule `figure3`: pass@1 across RL training progress, SFT vs GIFT initialisation (paper Figure 3).

Reads the ``dynamics`` rows of results/rl/<backbone>/<run>/metrics.json (``grpo.eval_every``).
Config keys: backbones (default: every backbone in the records), runs (default: sft and every
gift-b*), ci (true: bootstrap bands), benchmark (named in the panel titles).
"""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import ReportJob
from giftlab.provenance import write_sidecar
from giftlab.reporting.figures import backbones_in, figure3


def main(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--rl-metrics", nargs="+", required=True, help="results/rl/<backbone>/<run>/metrics.json")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--provenance", help="output: <stem>.provenance.json (config, code version, input hashes)")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    records = [read_json(f) for f in args.rl_metrics]
    job = ReportJob.from_config(config)
    backbones = job.backbones or backbones_in(records)
    figure3(records, backbones=backbones, pdf=args.pdf, png=args.png, runs=job.runs,
            run_specs=job.run_specs,
            ci=job.ci, benchmark=job.benchmark)
    if args.provenance:
        write_sidecar(args.provenance, config, args.rl_metrics, [args.pdf, args.png])


if __name__ == "__main__":
    cli.run(main)
