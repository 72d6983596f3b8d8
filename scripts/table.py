"""Rules `table`: paper Tables 1-5 as results/tables/table<N>.{csv,md,tex}, with the paper's numbers beside;
rule `table_extra`: the checkpoints of config models.extra (table "extra")."""

from giftlab import cli
from giftlab.jobs import TableJob
from giftlab.io import read_json
from giftlab.provenance import write_sidecar
from giftlab.reporting import tables


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--results", nargs="*", default=[],
                   help="eval summaries (tables 1-3), consistency JSONs (table 4) or MT-Bench scores (table 5)")
    p.add_argument("--stem", required=True, help="output path without extension")
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    records = [read_json(path) for path in args.results]
    job = TableJob.from_config(config)
    n, backbones, specs = job.table, job.backbones, job.run_specs  # run_specs: the plan's run table
    if n in (1, 2):
        build = tables.table1 if n == 1 else tables.table2
        df = build(records, benchmarks=job.benchmarks, paper=True, with_ci=True, backbones=backbones,
                   report_metric=job.report_metric, run_specs=specs)
    elif n == 3:
        df = tables.table3(records, ks=job.ks, benchmarks=job.benchmarks, paper=True, backbones=backbones,
                           run_specs=specs)
    elif n == 4:
        df = tables.table4(records, paper=True, backbones=backbones, run_specs=specs)
    elif n == 5:
        df = tables.table5(records, paper=True, backbones=backbones, run_specs=specs)
    elif n == "extra":
        evals = [r for r in records if "stage_pair" not in r]
        df = tables.extra_models_table(evals, benchmarks=job.benchmarks,
                                       consistency=[r for r in records if "stage_pair" in r])
    else:
        raise cli.ConfigError(f"table: no paper table {n} (1-5)")
    if n != "extra":
        df = tables.over_seeds(df, specs)  # replicates of a cell (config seeds): one row, mean and seed interval
    if n in (1, 2):  # as the paper prints them: each column's best per backbone in bold (.md, .tex)
        tables.mark_best(df)
    notes = (tables.subset_notes(records) if n in (1, 2, 3)  # beside the paper's numbers
             else tables.kl_notes(records) if n == 4 else [])
    written = tables.write_table(df, args.stem, notes=notes)
    write_sidecar(f"{args.stem}.provenance.json", config, args.results, written.values())


if __name__ == "__main__":
    cli.run(main)
