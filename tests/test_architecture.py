"""The library's shape: no import cycle between its modules (module-level or inside functions)."""

from __future__ import annotations

import ast
import sys

from helpers import REPO

SRC = REPO / "src"


def import_graph() -> dict[str, set[str]]:
    """module -> the giftlab modules it imports anywhere in its source (relative imports resolved)."""
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_the_library():
    graph = import_graph()
    assert "giftlab.objectives.heads.triton" in graph and graph["giftlab.plan"]  # the graph sees the modules
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_planning_imports_no_torch():
    """What Snakemake's own process runs on every call (the config checks, the plan with its labels from both
    registries, the stale-output check) never imports torch (1.5 s a call): giftlab.lazy defers it to the jobs."""
    import subprocess

    code = (
        "import sys, traceback\n"
        "class Watch:  # where torch was first imported from, for the failure message\n"
        "    where = ''\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' and not self.where:\n"
        "            self.where = ''.join(traceback.format_stack(limit=15))\n"
        "watch = Watch()\n"
        "sys.meta_path.insert(0, watch)\n"
        "from giftlab.config import load_config, validate_config\n"
        "from giftlab.plan import Plan\n"
        "from giftlab.stale import foreign_outputs\n"
        f"config = load_config({str(REPO / 'params.yaml')!r})\n"
        f"validate_config(config, {str(REPO / 'workflow' / 'schemas' / 'params.schema.yaml')!r})\n"
        "plan = Plan(config)\n"
        "plan.run_table(); plan.all_targets(); plan.recorded_configs()\n"
        "assert 'torch' not in sys.modules, 'torch was imported, from:\\n' + watch.where\n"
        "from giftlab.objectives import chunked_loss, get_objective\n"  # the heads and losses still load on use
        "import torch\n"
        "loss = get_objective('gift', beta=3.0)\n"
        "assert chunked_loss and loss.name == 'gift'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_programs_keep_torch_out_of_their_module_level():
    """Every job script (scripts/) and the test programs that run GRPO (tests/dist/) import torch only inside main():
    the grading pool's workers are forkserver children, and such a child runs its parent's main module again (as
    ``__mp_main__``) before it grades. With torch and transformers at module level each worker of a GRPO job spent
    ~2 s of CPU and held them in memory for nothing."""
    import subprocess

    code = (
        "import runpy, sys\n"
        "checked = 0\n"
        "for path in sys.argv[1:]:\n"
        "    runpy.run_path(path, run_name='__mp_main__')\n"
        "    heavy = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules)\n"
        "    if heavy:\n"
        "        sys.exit(f'{path} imports {heavy} at module level')\n"
        "    checked += 1\n"
        "print(checked)\n"
    )
    programs = sorted(map(str, [*(REPO / "scripts").glob("*.py"),
                                *(REPO / "tests" / "dist" / name for name in ("preempt.py", "processes.py"))]))
    result = subprocess.run([sys.executable, "-c", code, *programs], capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == len(programs) > 20  # every program was run
