"""Everything a GPU machine should check, in one go: GPU tests, then before/after throughput.

Made for a bare GPU machine (no Docker, no network, a few minutes lent): it needs only Python
with torch (a CUDA build), transformers and this checkout. It runs

1. the machine: GPU, torch/CUDA versions, and whether a Docker engine answers there (with or
   without the NVIDIA runtime; if it does, a GPU variant can be run through the sandbox:
   ``selfprog run programs/codelm`` with ``resources.gpus = 1``);
2. codelm: bytes/s and val_bpb of the seed in one budget, *before* (the seed's settings as they
   were: fp32, no compile, batch 32) and *after* (the GPU settings train.py declares: bf16, a
   batch that grows, compile when the budget pays for it), each trained bare then scored by the
   trusted evaluator;
3. ``hf``: tokens/s of a random-weight GPT-2-small-shaped model, dynamic cache eager (before)
   against a static cache with a compiled step (after), one whole proposal batch per call
   (after = ``hf.fast_decode = "auto"``: on a CPU that is the eager path again; forced on, a
   static cache over codelm's 13k-token prompt ran past 300 s on the loaded 2-core VM);
4. the ``self`` sampler's proposals per second with the *after* export, on CPU (before) and CUDA
   (after), the model loaded in process (the sandboxed sampler needs Docker);
5. the GPU tests (``pytest -m "gpu and not docker"``: they skip with a reason without CUDA),
   last, so that the figures are saved if the machine's time runs out during them.

Each step's figures are written to the JSON as soon as they are known. On an H200/H100 expect
about 8 minutes in all (two 60 s trainings and their evaluations, two hf runs, the sampler, then
about 3 minutes of GPU tests); ``--skip-tests`` or ``--budget-s 30`` make it shorter.

Figures go to ``$OUT/gpu_machine.json`` (``--out``) and a docs section is printed (``--write-docs``
puts it into docs/benchmarks.md). Without CUDA every step falls back to the CPU (``--small``
shrinks it to a smoke run: minutes on an idle machine), so the script is known to work before a GPU
machine is at hand.

    benchmarks/gpu_machine.sh                  # on the GPU machine: OUT=... is where figures go
    python benchmarks/gpu_machine.py --small   # anywhere: the CPU fallbacks, small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CODELM = ROOT / "programs" / "codelm"
BEFORE = {"AUTOCAST_BF16": False, "COMPILE": "off", "GPU_BATCH_MAX_SCALE": 1}
"""The settings that make today's train.py train as the seed did before the GPU settings."""
SECTION = "## GPU machine (benchmarks/gpu_machine.py)"


def log(text: str) -> None:
    print(f"[gpu_machine {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    smi = _run(["nvidia-smi", "-L"], 20) if shutil.which("nvidia-smi") else None
    info["nvidia_smi"] = smi["out"].strip().splitlines() if smi and smi["rc"] == 0 else None
    info["docker"] = docker_check()
    return info


def docker_check() -> dict[str, Any]:
    """Whether a Docker engine answers here, and whether it has the NVIDIA runtime."""
    if not shutil.which("docker"):
        return {"client": False, "engine": False, "why": "no docker command"}
    done = _run(["docker", "info", "--format", "{{json .Runtimes}}"], 20)
    if done["rc"] != 0:
        return {"client": True, "engine": False, "why": done["err"].strip()[-300:]}
    runtimes = json.loads(done["out"] or "{}") or {}
    return {"client": True, "engine": True, "runtimes": sorted(runtimes),
            "nvidia_runtime": "nvidia" in runtimes or bool(shutil.which("nvidia-container-cli"))}


def gpu_tests(timeout_s: float) -> dict[str, Any]:
    """The GPU tests that need no Docker, with their outcome counts (skips say why)."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        done = _run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                     "-m", "gpu and not docker", f"--junitxml={xml}", *files], timeout_s)
        counts: dict[str, Any] = {"rc": done["rc"], "files": files}
        if xml.exists():
            suite = ET.parse(xml).getroot()
            suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
            if suite is not None:
                counts |= {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors",
                                                            "skipped")}
                counts["failed"] = [c.get("name") for c in suite.iter("testcase")
                                    if c.find("failure") is not None or c.find("error") is not None]
    counts["tail"] = done["out"][-1500:]
    return counts


def train_variant(values: dict[str, Any], work: Path, budget_s: float) -> dict[str, Any]:
    """Train codelm bare with some settings changed, then score its export on held-out bytes."""
    from orchestrator.generators.searchspace import find_settings, render, substitute
    from tests.sandbox.serving import serving

    program = work / "program"
    shutil.copytree(CODELM, program, ignore=shutil.ignore_patterns("data", "__pycache__"))
    text = (CODELM / "train.py").read_text()
    found = {s.name: s for s in find_settings("train.py", text)}
    (program / "train.py").write_text(
        substitute(text, [(found[k], render(found[k], v)) for k, v in values.items()]))
    out = work / "out"
    out.mkdir()
    env = {"SELFPROG_OUT": str(out), "SELFPROG_DATA": str(CODELM / "data" / "train"),
           "SELFPROG_TIME_BUDGET_S": f"{budget_s:g}", "SELFPROG_SEED": "0"}
    started = time.monotonic()
    done = _run([sys.executable, str(program / "train.py")], budget_s * 4 + 120, env)
    wall = time.monotonic() - started
    if done["rc"] != 0:
        return {"error": f"train exited {done['rc']}: {done['err'][-800:]}"}
    meta = json.loads((out / "model.json").read_text())
    started = time.monotonic()
    with serving(program, out, work / "s.sock") as extra:
        scored = _run([sys.executable, str(program / "evaluate.py")], 900,
                      {**env, **extra, "SELFPROG_DATA": str(CODELM / "data" / "heldout")})
    metrics: dict[str, Any] = {}
    for line in scored["out"].splitlines():
        if line.startswith("{") and '"result"' in line:
            metrics = json.loads(line)["metrics"]
    keep = ("device", "steps", "batch", "bf16", "compiled", "train_bytes_per_s", "train_loss",
            "cuda_peak_bytes", "params")
    return {"settings": values, **{k: meta.get(k) for k in keep},
            "val_bpb": metrics.get("val_bpb"), "train_wall_s": round(wall, 1),
            "eval_s": round(time.monotonic() - started, 1),
            **({} if metrics else {"error": f"evaluate: {scored['err'][-800:]}"}),
            "export": str(out)}


def hf_bench(small: bool, fast: str, timeout_s: float) -> dict[str, Any]:
    size, n, tokens = ("tiny", 4, 24) if small else ("small", 16, 256)
    done = _run([sys.executable, str(ROOT / "benchmarks" / "hf_generate.py"), "--size", size,
                 "--n", str(n), "--batch-size", str(n), "--max-new-tokens", str(tokens),
                 "--fast-decode", fast], timeout_s)
    if done["rc"] != 0:
        return {"error": done["err"][-800:]}
    return json.loads(done["out"][done["out"].index("{"):])


def self_bench(export: Path, device: str, n: int, batch: int) -> dict[str, Any]:
    """Proposals per second of the ``self`` sampler (setting holes and completions, half each)."""
    from orchestrator.generators.base import GenerationRequest, Parent
    from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
    from orchestrator.generators.inprocess import InProcessCompleter
    from orchestrator.generators.selfgen import SelfGenerator
    from orchestrator.program import Program

    program = Program.load(CODELM)
    parent = Parent("", program.source_files())
    lm = InProcessCompleter.load(export, device=device)
    config = GeneratorConfig(backend="self", codelm=CodeLMConfig(hole_fraction=0.5))
    gen = SelfGenerator(config, lm, load=lambda f: InProcessCompleter.load(f, device=device))
    gen.propose(GenerationRequest(program, (parent,), n=1, seed=99))  # warm-up
    per, valid, made = [], 0, 0
    started = time.monotonic()
    seed = 0
    while made < n:
        t0 = time.monotonic()
        got = gen.propose(GenerationRequest(program, (parent,), n=min(batch, n - made), seed=seed))
        per.append((time.monotonic() - t0) / max(1, len(got)))
        made += len(got)
        valid += sum(p.valid for p in got)
        seed += batch
    wall = time.monotonic() - started
    return {"device": device, "proposals": made, "valid": valid, "wall_s": round(wall, 2),
            "proposals_per_s": round(made / wall, 2),
            "s_per_proposal_median": round(statistics.median(per), 3)}


def section(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [SECTION, "",
             f"Measured {report['date']} on {m['gpu'] or 'no GPU (CPU fallback)'} "
             f"({m['host']}, {m['cpus']} CPUs), torch {m['torch']} (CUDA {m['torch_cuda']}); "
             f"`python benchmarks/gpu_machine.py{' --small' if report['small'] else ''}`"
             f" (budget {report['budget_s']:g} s). Docker engine there: "
             f"{_docker_words(m['docker'])}.", ""]
    t = report.get("tests")
    if t:
        lines += [f"GPU tests: {t.get('tests', '?')} run, {t.get('failures', 0)} failed, "
                  f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped.", ""]
    lines += ["| what | before | after |", "|---|---|---|"]
    c = report.get("codelm", {})
    b, a = c.get("before", {}), c.get("after", {})
    lines.append(f"| codelm seed, train bytes/s | {_num(b.get('train_bytes_per_s'))} | "
                 f"{_num(a.get('train_bytes_per_s'))} |")
    lines.append(f"| codelm seed, val_bpb in {report['budget_s']:g} s | "
                 f"{_num(b.get('val_bpb'), 3)} | {_num(a.get('val_bpb'), 3)} |")
    shape = [" / ".join(str(x.get(k)) for k in ("batch", "bf16", "compiled")) for x in (b, a)]
    lines.append(f"| codelm batch / bf16 / compiled | {shape[0]} | {shape[1]} |")
    h = report.get("hf", {})
    run = h.get("after", {}) if "model" in h.get("after", {}) else h.get("before", {})
    lines.append(f"| hf tokens/s ({run.get('model', '?')}, batch {run.get('batch_size', '?')}) | "
                 f"{_num(h.get('before', {}).get('tokens_per_s'))} | "
                 f"{_num(h.get('after', {}).get('tokens_per_s'))} |")
    s = report.get("self", {})
    lines.append(f"| self sampler proposals/s (CPU → {s.get('after', {}).get('device', '-')}) | "
                 f"{_num(s.get('before', {}).get('proposals_per_s'), 2)} | "
                 f"{_num(s.get('after', {}).get('proposals_per_s'), 2)} |")
    lines += ["", "Before: codelm with the seed's old settings (fp32, batch 32, no compile); hf "
              "with a dynamic cache, eager; the self sampler on CPU. After: codelm's declared GPU "
              "settings, hf.fast_decode, the sampler on the GPU."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "build/gpu_machine"))
    ap.add_argument("--budget-s", type=float, default=None,
                    help="codelm's training budget (default 60, or 8 with --small)")
    ap.add_argument("--small", action="store_true", help="a smoke run of the CPU fallbacks")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    budget = args.budget_s or (8.0 if args.small else 60.0)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "small": args.small, "budget_s": budget}

    def save() -> None:
        (args.out / "gpu_machine.json").write_text(json.dumps(report, indent=1, default=str))

    report["machine"] = machine()
    log(f"machine: {report['machine']}")
    save()
    cuda = report["machine"]["cuda_available"]
    report["codelm"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, values in (("before", BEFORE), ("after", {})):
            log(f"codelm {name} ({budget:g} s budget) ...")
            (Path(tmp) / name).mkdir()
            report["codelm"][name] = train_variant(values, Path(tmp) / name, budget)
            log(f"codelm {name}: {report['codelm'][name]}")
            save()
        report["hf"] = {}
        for name, fast in (("before", "off"), ("after", "auto")):  # auto: fast on CUDA only
            log(f"hf {name} ...")
            report["hf"][name] = hf_bench(args.small, fast, 300)
            save()
        export = Path(report["codelm"]["after"].get("export", ""))
        report["self"] = {}
        if (export / "model.pt").is_file():
            n, batch = (2, 2) if args.small else (32, 16)
            report["self"]["after"] = {"skipped": "no CUDA: after would be the CPU again"}
            for name, device in (("before", "cpu"), ("after", "cuda"))[:2 if cuda else 1]:
                log(f"self sampler {name} on {device} ...")
                try:
                    report["self"][name] = self_bench(export, device, n, batch)
                except Exception as exc:  # a benchmark step failing must not lose the others
                    report["self"][name] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
                save()
    if not args.skip_tests:  # last: the figures above are kept (saved) if time runs out here
        log("GPU tests ...")
        report["tests"] = gpu_tests(120 if args.small else 420)
        save()
    text = section(report)
    (args.out / "gpu_machine.md").write_text(text)
    print(text)
    if args.write_docs:
        from benchmarks.docsection import write_section

        write_section(ROOT / "docs" / "benchmarks.md", text)


def _docker_words(d: dict[str, Any]) -> str:
    if not d.get("engine"):
        return f"none ({d.get('why', '?')})"
    return f"answers, NVIDIA runtime {'present' if d.get('nvidia_runtime') else 'absent'}"


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def _run(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full = {**os.environ, "PYTHONPATH": path, **(env or {})}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=full,
                              cwd=ROOT, check=False)
    except subprocess.TimeoutExpired as exc:
        return {"rc": 124, "out": str(exc.stdout or ""), "err": f"timed out after {timeout_s:g} s"}
    except OSError as exc:
        return {"rc": 127, "out": "", "err": str(exc)}
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}


if __name__ == "__main__":
    main()
