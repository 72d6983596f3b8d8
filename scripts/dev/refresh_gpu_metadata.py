#!/usr/bin/env python3
"""Regenerate tests/fixtures/gpu_requirements_metadata.json: what PyPI declares for the GPU pins.

    python scripts/dev/refresh_gpu_metadata.py            # run from the repository root, needs PyPI access
    python scripts/dev/refresh_gpu_metadata.py --check    # exit 1 if the committed fixture is out of date

Run it after changing requirements-gpu.txt (or requirements-cpu.txt), then `python -m pytest
tests/workflow/test_gpu_requirements.py`, which checks the pins against the fixture offline.

For every package in PACKAGES the fixture records, at the version pinned in requirements-gpu.txt, the
Requires-Dist and Requires-Python of the wheel pip would install on the target (CPython 3.11, manylinux
x86_64): a wheel's metadata can depend on its platform (torch's Linux wheels are the ones with the CUDA
dependencies), so it is read from that wheel, not from a release-wide summary. Route, per wheel, metadata
only (a torch or vLLM wheel is hundreds of MB and is never downloaded whole):

1. the PEP 691 JSON simple index (``<index>/<name>/``) lists the files and their sha256;
2. if the index serves PEP 658 metadata for the wheel, ``<wheel url>.metadata`` is fetched (and its hash checked);
3. otherwise ``*.dist-info/METADATA`` is read out of the wheel with HTTP range requests (the zip's central
   directory at its end, then that one member), as pip's ``--use-feature=fast-deps`` does.

It also records ``alternatives``: the same metadata for versions that are deliberately *not* pinned (the
CPU pins of the same packages, the newest vLLM, the newest SLURM executor plugin), which the test feeds
in to show that they conflict, and the vLLM range TRL's own runtime check accepts (``trl/import_utils.py``
of the pinned TRL wheel, read the same way).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import json
import re
import sys
import urllib.request
import zipfile
from pathlib import Path

from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
GPU_REQUIREMENTS = ROOT / "requirements-gpu.txt"
CPU_REQUIREMENTS = ROOT / "requirements-cpu.txt"
FIXTURE = ROOT / "tests" / "fixtures" / "gpu_requirements_metadata.json"
INDEX = "https://pypi.org/simple"

# The distributions whose declared requirements decide whether the GPU set holds together. Each must be
# pinned in requirements-gpu.txt (the test checks it).
PACKAGES = (
    "torch", "triton", "transformers", "tokenizers", "huggingface-hub", "accelerate", "trl", "datasets",
    "vllm", "liger-kernel", "mistral-common", "numpy", "pandas",
    "snakemake", "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep",
    "snakemake-interface-executor-plugins", "snakemake-interface-common",
)
# Versions that are not pinned but whose metadata the test uses to show they conflict, besides the
# requirements-cpu.txt pins of PACKAGES (added automatically where they differ from the GPU pins).
EXTRA_ALTERNATIVES = ("vllm==0.34.0", "snakemake-executor-plugin-slurm==2.8.0")

# The target: Linux x86_64, CPython 3.11 (PEP 508 marker values; python_full_version is a representative).
MARKER_ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.7",
    "python_version": "3.11",
    "sys_platform": "linux",
}
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(40, 4, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"])
# In pip's order of preference: the most specific tag first.
TARGET_TAGS = [*tags.cpython_tags((3, 11), platforms=PLATFORMS),
               *tags.compatible_tags((3, 11), "cp311", PLATFORMS)]
TAG_RANK = {tag: i for i, tag in enumerate(TARGET_TAGS)}

USER_AGENT = "giftlab-refresh-gpu-metadata"
TIMEOUT = 120


def read_pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, extras)`` of a requirements file of ``name[extras]==version`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise SystemExit(f"{path.name}: {line!r} is not an exact pin")
        pins[canonicalize_name(req.name)] = (specs[0].version, sorted(req.extras))
    return pins


def _get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return resp.status, resp.read()


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (enough for zipfile), fetched in blocks."""

    BLOCK = 256 * 1024

    def __init__(self, url: str, size: int):
        self.url, self.size, self.pos, self.blocks, self.requests = url, size, 0, {}, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            start = index * self.BLOCK
            end = min(start + self.BLOCK, self.size) - 1
            req = urllib.request.Request(self.url, headers={"User-Agent": USER_AGENT, "Range": f"bytes={start}-{end}"})
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                if resp.status != 206:  # the server ignored the range: refuse to download the whole wheel
                    raise RuntimeError(f"{self.url}: no HTTP range support (status {resp.status})")
                self.blocks[index] = resp.read()
            self.requests += 1
        return self.blocks[index]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        out = bytearray()
        while n > 0:
            index, offset = divmod(self.pos, self.BLOCK)
            chunk = self._block(index)[offset:offset + n]
            out += chunk
            self.pos += len(chunk)
            n -= len(chunk)
        return bytes(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _content_length(url: str) -> int:
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return int(resp.headers["Content-Length"])


def index_files(name: str, index: str) -> list[dict]:
    _, body = _get(f"{index}/{canonicalize_name(name)}/",
                   headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    return json.loads(body)["files"]


def target_wheel(name: str, version: str, index: str) -> dict:
    """The index entry of the wheel pip would pick for the target (most specific tag)."""
    best, best_rank = None, None
    for entry in index_files(name, index):
        filename = entry["filename"]
        if not filename.endswith(".whl") or entry.get("yanked"):
            continue
        _, wheel_version, _, wheel_tags = parse_wheel_filename(filename)
        if wheel_version != Version(version):
            continue
        ranks = [TAG_RANK[t] for t in wheel_tags if t in TAG_RANK]
        if ranks and (best_rank is None or min(ranks) < best_rank):
            best, best_rank = entry, min(ranks)
    if best is None:
        raise SystemExit(f"{name}=={version}: no wheel for CPython 3.11 / manylinux x86_64 on {index}")
    return best


def wheel_member(entry: dict, pattern: str) -> str:
    """The text of the member of a wheel whose path fully matches ``pattern``, by PEP 658 or HTTP ranges."""
    url = entry["url"]
    if pattern.endswith(r"\.dist-info/METADATA"):
        core = entry.get("core-metadata") or entry.get("data-dist-info-metadata")
        if core:
            _, body = _get(url.split("#", 1)[0] + ".metadata")
            expected = core.get("sha256") if isinstance(core, dict) else None
            if expected and hashlib.sha256(body).hexdigest() != expected:
                raise SystemExit(f"{entry['filename']}.metadata: sha256 mismatch")
            return body.decode("utf-8")
    url = url.split("#", 1)[0]
    with zipfile.ZipFile(RangeFile(url, _content_length(url))) as wheel:
        members = [m for m in wheel.namelist() if re.fullmatch(pattern, m)]
        if len(members) != 1:
            raise SystemExit(f"{entry['filename']}: {len(members)} members match {pattern!r}")
        return wheel.read(members[0]).decode("utf-8")


def metadata(name: str, version: str, index: str) -> dict:
    entry = target_wheel(name, version, index)
    msg = email.parser.Parser().parsestr(wheel_member(entry, r"[^/]+\.dist-info/METADATA"))
    if canonicalize_name(msg["Name"]) != canonicalize_name(name) or Version(msg["Version"]) != Version(version):
        raise SystemExit(f"{entry['filename']}: METADATA says {msg['Name']} {msg['Version']}")
    print(f"  {name}=={version}: {entry['filename']}", file=sys.stderr)
    return {
        "version": version,
        "requires_python": msg.get("Requires-Python"),
        "requires_dist": msg.get_all("Requires-Dist") or [],
        "wheel": entry["filename"],
        "sha256": entry.get("hashes", {}).get("sha256"),
    }


def trl_vllm_range(version: str, index: str) -> dict:
    """The vLLM versions TRL's own runtime check accepts (``is_vllm_available`` in trl/import_utils.py)."""
    source = wheel_member(target_wheel("trl", version, index), r"trl/import_utils\.py")
    found = re.search(r'Version\("([^"]+)"\)\s*<=\s*_vllm\w*version\s*<=\s*Version\("([^"]+)"\)', source)
    if not found:
        raise SystemExit(f"trl {version}: trl/import_utils.py has no 'Version(a) <= _vllm_*version <= Version(b)' "
                         "check any more; read is_vllm_available and update trl_vllm_range()")
    return {"trl": version, "min": found.group(1), "max": found.group(2), "source": "trl/import_utils.py"}


def build(index: str) -> dict:
    gpu, cpu = read_pins(GPU_REQUIREMENTS), read_pins(CPU_REQUIREMENTS)
    missing = [p for p in PACKAGES if canonicalize_name(p) not in gpu]
    if missing:
        raise SystemExit(f"not pinned in requirements-gpu.txt: {', '.join(missing)}")
    pinned = {}
    for name in PACKAGES:
        pinned[canonicalize_name(name)] = metadata(name, gpu[canonicalize_name(name)][0], index)
    wanted = {(n, cpu[n][0]) for n in map(canonicalize_name, PACKAGES) if n in cpu and cpu[n][0] != gpu[n][0]}
    for spec in EXTRA_ALTERNATIVES:
        req = Requirement(spec)
        wanted.add((canonicalize_name(req.name), next(iter(req.specifier)).version))
    alternatives: dict[str, dict] = {}
    for name, version in sorted(wanted):
        alternatives.setdefault(name, {})[version] = metadata(name, version, index)
    return {
        "_about": "Generated by scripts/dev/refresh_gpu_metadata.py from PyPI (wheel METADATA for the target); "
                  "read by tests/workflow/test_gpu_requirements.py. Do not edit by hand: rerun the script.",
        "target": {"python": "3.11", "platform": "manylinux x86_64", "marker_environment": MARKER_ENVIRONMENT},
        "pinned": pinned,
        "alternatives": alternatives,
        "trl_vllm_runtime_range": trl_vllm_range(gpu["trl"][0], index),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index-url", default=INDEX, help="a PEP 691 simple index (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=FIXTURE)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args()
    text = json.dumps(build(args.index_url.rstrip("/")), indent=1, sort_keys=False) + "\n"
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: rerun scripts/dev/refresh_gpu_metadata.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date", file=sys.stderr)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
