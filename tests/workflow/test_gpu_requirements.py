"""requirements-gpu.txt is one installable set (offline: no index, no GPU).

tests/fixtures/gpu_requirements_metadata.json holds what PyPI declares (Requires-Dist, Requires-Python of the
Linux x86_64 / CPython 3.11 wheel) for the pinned distributions that decide whether the set holds together,
and for a few versions deliberately not pinned. scripts/dev/refresh_gpu_metadata.py regenerates it; the
resolver run that proves the whole set (every transitive dependency) is the command in requirements-gpu.txt's
header. Here every pinned version must satisfy every other pinned package's requirements (markers evaluated for
the target; a requirement under an extra counts only when that extra is requested by a pin or by an active
requirement), TRL's runtime check must accept the pinned vLLM, and pyproject's `gpu` extra and base ranges
must admit the pins. The same check must reject the combinations that do not work (the CPU set's transformers
5.24.0 next to vLLM, ...).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
GPU_REQUIREMENTS = ROOT / "requirements-gpu.txt"
CPU_REQUIREMENTS = ROOT / "requirements-cpu.txt"
FIXTURE = ROOT / "tests" / "fixtures" / "gpu_requirements_metadata.json"
# What the brief of the GPU set names; the fixture may hold more.
MUST_BE_IN_FIXTURE = ("torch", "transformers", "trl", "accelerate", "vllm", "liger-kernel",
                      "snakemake-executor-plugin-slurm", "snakemake", "tokenizers", "huggingface-hub", "datasets",
                      "numpy")


def read_pins(path: Path) -> dict[str, tuple[Version, frozenset[str]]]:
    """``canonical name -> (version, extras)`` of a file of ``name[extras]==version`` lines and comments."""
    pins: dict[str, tuple[Version, frozenset[str]]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.marker, \
            f"{path.name}:{number}: {raw!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}:{number}: {name} pinned twice"
        pins[name] = (Version(specs[0].version), frozenset(req.extras))
    return pins


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def gpu_pins() -> dict[str, tuple[Version, frozenset[str]]]:
    return read_pins(GPU_REQUIREMENTS)


def _applies(marker: Marker | None, env: dict[str, str], extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**env, "extra": extra}) for extra in (extras or {""}))


def conflicts(pins: dict[str, tuple[Version, frozenset[str]]], metadata: dict[str, dict], env: dict[str, str],
              trl_vllm: dict | None = None) -> list[str]:
    """Every way ``pins`` break the declared requirements of the pinned packages ``metadata`` describes.

    ``metadata``: canonical name -> {"version", "requires_python", "requires_dist"} for (some of) the pins;
    a pin without metadata for its version is still checked as the target of the others' requirements.
    """
    found = []
    described = {name: meta for name, meta in metadata.items()
                 if name in pins and Version(meta["version"]) == pins[name][0]}
    # the extras in force: those pinned, then those requested by requirements in force (to a fixed point)
    extras = {name: set(pinned_extras) for name, (_, pinned_extras) in pins.items()}
    changed = True
    while changed:
        changed = False
        for name, meta in described.items():
            for line in meta["requires_dist"]:
                req = Requirement(line)
                target = canonicalize_name(req.name)
                if target in extras and _applies(req.marker, env, extras[name]) and not req.extras <= extras[target]:
                    extras[target] |= req.extras
                    changed = True
    for name, meta in sorted(described.items()):
        version = pins[name][0]
        if meta["requires_python"] and env["python_full_version"] not in SpecifierSet(meta["requires_python"]):
            found.append(f"{name}=={version} requires Python {meta['requires_python']}")
        for line in meta["requires_dist"]:
            req = Requirement(line)
            target = canonicalize_name(req.name)
            if target not in pins or not _applies(req.marker, env, extras[name]):
                continue
            if not req.specifier.contains(pins[target][0], prereleases=True):
                found.append(f"{name}=={version} requires {line!r}, but {target}=={pins[target][0]} is pinned")
    if trl_vllm and "vllm" in pins and "trl" in pins and pins["trl"][0] == Version(trl_vllm["trl"]):
        vllm = Version(pins["vllm"][0].base_version)
        if not Version(trl_vllm["min"]) <= vllm <= Version(trl_vllm["max"]):
            found.append(f"trl=={trl_vllm['trl']} supports vllm {trl_vllm['min']}..{trl_vllm['max']} "
                         f"({trl_vllm['source']}), but vllm=={pins['vllm'][0]} is pinned")
    return found


def with_versions(pins, fixture, overrides: dict[str, str]):
    """The pins and their metadata with some versions swapped for the fixture's alternatives."""
    pins, metadata = dict(pins), dict(fixture["pinned"])
    for name, version in overrides.items():
        name = canonicalize_name(name)
        pins[name] = (Version(version), pins.get(name, (None, frozenset()))[1])
        alternative = fixture["alternatives"].get(name, {}).get(version)
        if name in metadata and Version(metadata[name]["version"]) == Version(version):
            continue  # the pinned version itself
        if alternative is not None:
            metadata[name] = alternative
        else:  # no metadata for that version: it is only checked against the others' requirements
            metadata.pop(name, None)
    return pins, metadata


def test_every_line_of_requirements_gpu_is_an_exact_pin(gpu_pins):
    assert {"torch", "transformers", "trl", "accelerate", "vllm", "liger-kernel", "triton",
            "snakemake-executor-plugin-slurm"} <= gpu_pins.keys()


def test_header_names_the_resolving_command():
    header = [line for line in GPU_REQUIREMENTS.read_text().splitlines() if line.startswith("#")]
    assert any(re.search(r"pip .*install .*--dry-run .*-r requirements-gpu\.txt", line) for line in header)


def test_fixture_describes_the_target(fixture):
    env = fixture["target"]["marker_environment"]
    assert env["python_version"] == "3.11" and env["platform_system"] == "Linux"
    assert env["platform_machine"] == "x86_64"
    for name, meta in fixture["pinned"].items():
        assert re.search(r"(manylinux\w*_x86_64|linux_x86_64|-any)\.whl$", meta["wheel"]), name


def test_fixture_has_the_packages_that_matter(fixture):
    assert set(map(canonicalize_name, MUST_BE_IN_FIXTURE)) <= fixture["pinned"].keys()


def test_every_package_in_the_fixture_is_pinned_at_the_fixture_version(fixture, gpu_pins):
    """Otherwise the fixture is stale: rerun scripts/dev/refresh_gpu_metadata.py."""
    stale = {name: (meta["version"], str(gpu_pins[name][0]) if name in gpu_pins else "not pinned")
             for name, meta in fixture["pinned"].items()
             if name not in gpu_pins or gpu_pins[name][0] != Version(meta["version"])}
    assert not stale, f"fixture vs requirements-gpu.txt: {stale}; rerun scripts/dev/refresh_gpu_metadata.py"


def test_the_pinned_set_satisfies_every_declared_requirement(fixture, gpu_pins):
    env = fixture["target"]["marker_environment"]
    assert conflicts(gpu_pins, fixture["pinned"], env, fixture["trl_vllm_runtime_range"]) == []


def test_trl_runtime_check_accepts_the_pinned_vllm(fixture, gpu_pins):
    """GRPOTrainer's vLLM path warns outside this range (trl.import_utils.is_vllm_available)."""
    accepted = fixture["trl_vllm_runtime_range"]
    assert Version(accepted["trl"]) == gpu_pins["trl"][0]
    assert Version(accepted["min"]) <= Version(gpu_pins["vllm"][0].base_version) <= Version(accepted["max"])
    assert "vllm" in gpu_pins["trl"][1], "pin trl[vllm] so pip enforces TRL's declared vLLM range too"


def test_the_torch_pin_is_the_cuda_wheel(fixture):
    """PyPI's default Linux torch wheel is a CUDA build: it requires the CUDA runtime packages."""
    torch = fixture["pinned"]["torch"]
    env = fixture["target"]["marker_environment"]
    cuda = [r for r in map(Requirement, torch["requires_dist"])
            if _applies(r.marker, env, set()) and re.match(r"(nvidia-|cuda-)", canonicalize_name(r.name))]
    assert cuda, "the pinned torch wheel has no CUDA dependencies"


def _bounds(spec: SpecifierSet) -> tuple[bool, bool]:
    ops = {s.operator for s in spec}
    return bool(ops & {">=", ">", "~=", "==", "==="}), bool(ops & {"<", "<=", "~=", "==", "==="})


def test_pyproject_gpu_extra_is_bounded_and_admits_the_pins(gpu_pins):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    names = {canonicalize_name(r.name) for r in gpu}
    assert {"vllm", "liger-kernel", "snakemake-executor-plugin-slurm"} <= names
    for req in gpu:
        name = canonicalize_name(req.name)
        assert name in gpu_pins, f"gpu extra names {name}, which requirements-gpu.txt does not pin"
        assert _bounds(req.specifier) == (True, True), f"gpu extra: {req} needs a lower and an upper bound"
        assert req.specifier.contains(gpu_pins[name][0], prereleases=True), \
            f"gpu extra {req} excludes the pin {name}=={gpu_pins[name][0]}"


def test_pyproject_base_ranges_admit_the_gpu_pins(gpu_pins):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]).contains("3.11")
    for req in map(Requirement, project["dependencies"]):
        name = canonicalize_name(req.name)
        if name in gpu_pins:
            assert req.specifier.contains(gpu_pins[name][0], prereleases=True), \
                f"pyproject dependency {req} excludes the GPU pin {name}=={gpu_pins[name][0]}"


def test_the_gpu_set_pins_every_base_dependency(gpu_pins):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]} - gpu_pins.keys()
    assert not missing, f"pyproject dependencies not pinned in requirements-gpu.txt: {sorted(missing)}"


# Versions that do not go together with the rest of the GPU set, and the conflict each must raise.
BROKEN = {
    "cpu-transformers-5.24-with-vllm": ({"transformers": "5.24.0"},
                                        "vllm==0.31.0 requires 'transformers<5.18.0,>=5.10.4'"),
    "cpu-numpy-2.4.6": ({"numpy": "2.4.6"}, "mistral-common==1.13.1 requires 'numpy<2.4,>=1.25"),
    "cpu-pandas-3-with-slurm-plugin-2.6": ({"pandas": "3.1.1"}, "snakemake-executor-plugin-slurm==2.6.1 requires"),
    "cpu-triton-3.9": ({"triton": "3.9.0"}, "torch==2.13.0 requires 'triton==3.7.1"),
    "newest-vllm-torch": ({"vllm": "0.34.0"}, "vllm==0.34.0 requires 'torch==2.14.0'"),
    "newest-vllm-trl-extra": ({"vllm": "0.34.0"}, "trl==1.16.0 requires 'vllm<=0.31.0,>=0.22.0; extra == \"vllm\"'"),
    "newest-vllm-trl-runtime": ({"vllm": "0.34.0"}, "trl==1.16.0 supports vllm 0.22.0..0.31.0"),
    "newest-slurm-plugin-numpy": ({"snakemake-executor-plugin-slurm": "2.8.0"},
                                  "snakemake-executor-plugin-slurm==2.8.0 requires 'numpy<3,>=2.4.5'"),
    "transformers-above-vllm-cap": ({"transformers": "5.18.0"}, "vllm==0.31.0 requires 'transformers"),
    "hub-2-with-transformers-5.17": ({"huggingface-hub": "2.4.0"},
                                     "transformers==5.17.0 requires 'huggingface-hub<2.0"),
    "torch-2.14-with-vllm-0.31": ({"torch": "2.14.0"}, "vllm==0.31.0 requires 'torch==2.13.0'"),
}


@pytest.mark.parametrize("overrides, expected", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_combination_is_reported(fixture, gpu_pins, overrides, expected):
    pins, metadata = with_versions(gpu_pins, fixture, overrides)
    found = conflicts(pins, metadata, fixture["target"]["marker_environment"], fixture["trl_vllm_runtime_range"])
    assert any(expected in c for c in found), f"{overrides}: expected {expected!r} among {found}"


def test_requirements_cpu_pins_with_the_gpu_extras_do_not_resolve(fixture, gpu_pins):
    """requirements-cpu.txt's versions of the GPU set's packages, next to its vLLM: what the GPU install used to be."""
    cpu = {name: str(version) for name, (version, _) in read_pins(CPU_REQUIREMENTS).items() if name in gpu_pins}
    pins, metadata = with_versions(gpu_pins, fixture, cpu)
    found = conflicts(pins, metadata, fixture["target"]["marker_environment"], fixture["trl_vllm_runtime_range"])
    if cpu.get("transformers") == "5.24.0":
        assert any(c.startswith("vllm==0.31.0 requires 'transformers") for c in found), found
    assert found, "requirements-cpu.txt's pins now go with the GPU set: consider one requirements file"
