"""giftlab: a reproducible pipeline for GIFT (Gibbs Initialization with Finite Temperature).

The library behind the Snakemake rules in ``workflow/``: every rule's script is a thin
entry point over a function here, so everything worth testing is importable.
"""

__version__ = "0.1.0"
