"""Rule `summary`: small flat files for `dvc metrics` / `dvc plots` (pass@1 and SFT validation loss per run)."""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import ReportJob
from giftlab.reporting.summary import write_summary


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--sft", nargs="+", required=True, help="results/sft/<backbone>/<run>/metrics.json")
    p.add_argument("--rl", nargs="+", required=True, help="post-RL eval summaries, same order as --sft")
    p.add_argument("--metrics", required=True)
    p.add_argument("--val-loss", required=True)
    p.add_argument("--pass1", required=True)
    p.add_argument("--provenance", required=True, help="the three files' provenance sidecar")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = ReportJob.from_config(config)
    write_summary([read_json(f) for f in args.sft], [read_json(f) for f in args.rl], job.benchmark,
                  metrics=args.metrics, val_loss=args.val_loss, pass1=args.pass1, provenance=args.provenance,
                  inputs=[*args.sft, *args.rl], config=config)


if __name__ == "__main__":
    cli.run(main)
