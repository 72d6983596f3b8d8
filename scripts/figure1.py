"""Rule `figure1`: SFT validation loss per epoch, and post-RL pass@1 across β (paper Figure 1)."""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import Fig1Job
from giftlab.provenance import write_sidecar
from giftlab.reporting.figures import figure1


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--sft-metrics", nargs="+", required=True, help="results/sft/<backbone>/<run>/metrics.json")
    p.add_argument("--rl-evals", nargs="+", required=True, help="results/eval/rl/<backbone>/<run>/<bench>.summary.json")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--provenance", help="output: <stem>.provenance.json (config, code version, input hashes)")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = Fig1Job.from_config(config)
    figure1([read_json(f) for f in args.sft_metrics], [read_json(f) for f in args.rl_evals],
            backbones=job.backbones, pdf=args.pdf, png=args.png, benchmarks=job.benchmarks)
    if args.provenance:
        write_sidecar(args.provenance, config, [*args.sft_metrics, *args.rl_evals], [args.pdf, args.png])


if __name__ == "__main__":
    cli.run(main)
