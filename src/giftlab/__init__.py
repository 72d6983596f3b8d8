"""giftlab: a reproducible pipeline for GIFT (Gibbs Initialization with Finite Temperature).

The library behind the Snakemake rules in ``workflow/``: every rule's script is a thin
entry point over a function here, so everything worth testing is importable.
"""

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __all__)`` for a package whose names load from their submodule on first use (PEP 562):
    importing one light submodule then does not import the package's heavy ones."""
    from importlib import import_module

    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name):
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(where)
