"""Rule `claims`: states, claim by claim, whether this run agrees with the paper (results/tables/claims.md)."""

from giftlab import cli
from giftlab.io import read_json
from giftlab.jobs import ReportJob
from giftlab.provenance import write_sidecar
from giftlab.reporting.claims import write_claims
from giftlab.reporting.rl_gain import per_problem_counts
from giftlab.reporting.samples import read_samples
from giftlab.reporting.tables import job_field


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--rl", nargs="*", default=[], help="post-RL eval summaries")
    p.add_argument("--rl-samples", nargs="*", default=[],
                   help="the post-RL evaluations' samples.jsonl, in --rl order (paired tests over problems)")
    p.add_argument("--pre-rl", nargs="*", default=[], help="pre-RL (SFT checkpoint) eval summaries")
    p.add_argument("--pre-rl-samples", nargs="*", default=[],
                   help="the pre-RL evaluations' samples.jsonl, in --pre-rl order (claim 2 paired over problems)")
    p.add_argument("--consistency", nargs="*", default=[], help="consistency JSONs")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance", help="output: <stem>.provenance.json (config, code version, input hashes)")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = ReportJob.from_config(config)
    rl, pre_rl = [read_json(f) for f in args.rl], [read_json(f) for f in args.pre_rl]
    samples = _by_evaluation(rl, args.rl_samples, "--rl", per_problem_counts)
    pre_rl_samples = _by_evaluation(pre_rl, args.pre_rl_samples, "--pre-rl", per_problem_counts)
    write_claims(args.out, rl, pre_rl, [read_json(f) for f in args.consistency], run_specs=job.run_specs,
                 reasoning_benchmarks=job.reasoning_benchmarks, samples=samples, pre_rl_samples=pre_rl_samples,
                 report_metric=job.report_metric)
    if args.provenance:
        write_sidecar(args.provenance, config, [*args.rl, *args.rl_samples, *args.pre_rl, *args.pre_rl_samples,
                                                *args.consistency], [args.out])


def _by_evaluation(summaries, sample_files, option, per_problem):
    """{(backbone, run, benchmark): per_problem(samples)} of the evaluations whose samples were given (one file per
    summary of ``option``, in its order; none given: {})."""
    if sample_files and len(sample_files) != len(summaries):
        raise cli.ConfigError(f"claims: {len(sample_files)} {option}-samples for {len(summaries)} {option} summaries "
                              "(one per summary, same order)")
    return {tuple(job_field(rec, k) for k in ("backbone", "run", "benchmark")): per_problem(read_samples(f))
            for rec, f in zip(summaries, sample_files)}


if __name__ == "__main__":
    cli.run(main)
