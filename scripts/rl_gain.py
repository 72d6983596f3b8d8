"""Rule `rl_gain`: pass@1 after minus before GRPO, paired over problems (results/tables/rl_gain.*)."""

from giftlab import cli
from giftlab.jobs import RLGainJob
from giftlab.provenance import write_sidecar
from giftlab.reporting.rl_gain import rl_gain_table
from giftlab.reporting.samples import read_samples
from giftlab.reporting.tables import write_table


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--pre", nargs="+", required=True, help="pre-RL samples.jsonl files")
    p.add_argument("--post", nargs="+", required=True, help="post-RL samples.jsonl files, same order")
    p.add_argument("--stem", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = RLGainJob.from_config(config)
    if len(args.pre) != len(args.post) or len(args.pre) != len(job.pairs):
        raise cli.ConfigError("rl_gain: --pre, --post and config pairs must have the same length")
    pairs = [(bb, run, bench, read_samples(pre), read_samples(post))
             for (bb, run, bench), pre, post in zip(job.pairs, args.pre, args.post)]
    written = write_table(rl_gain_table(pairs, job.run_specs), args.stem)
    write_sidecar(f"{args.stem}.provenance.json", config, [*args.pre, *args.post], written.values())


if __name__ == "__main__":
    cli.run(main)
