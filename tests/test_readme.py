"""The README runs as written: its shell and Python blocks in order in one empty folder, its names resolve.

Shell (```bash) blocks run one bash session each (``set -e -o pipefail``), Python (```python) blocks run
in one interpreter per run of consecutive blocks (a shared namespace, like one session), all in document
order in one temporary folder, with this checkout first on ``PYTHONPATH`` and the environment's ``PATH``
(the ``gmg-*`` console scripts and ``python``). A line ending in ``# readme-test: skip (why)`` is not run
(install, GPU/TensorRT, camera and the test-suite lines). No runnable line may name a host other than
127.0.0.1/localhost; the Triton block's ports 8000-8002 are replaced by free ports on 127.0.0.1.
Other blocks (```text, config examples, unlabelled) are not run.
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP = "# readme-test: skip"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
BLOCK_TIMEOUT_S = 600  # one block; the whole README run is a few minutes on 2 cores


@dataclass
class Block:
    lang: str
    line: int  # README line number of the block's first content line
    text: str

    def runnable(self) -> str:
        """The block without its ``# readme-test: skip`` lines."""
        return "\n".join(ln for ln in self.text.splitlines() if SKIP not in ln) + "\n"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block: its info string (language), first line number and content."""
    blocks, lang, start, buf = [], None, 0, []
    for i, ln in enumerate(text.splitlines(), 1):
        if lang is None:
            m = re.match(r"^```(\S*)\s*$", ln)
            if m:
                lang, start, buf = m.group(1), i + 1, []
        elif ln.startswith("```"):
            blocks.append(Block(lang, start, "\n".join(buf) + "\n"))
            lang = None
        else:
            buf.append(ln)
    assert lang is None, f"README.md line {start - 1}: code block never closed"
    return blocks


# ---------------------------------------------------------------------------------------------- hosts
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(\[[^\]]*\]|[^/\s:'\"]*)")
_HOST_OPT = re.compile(r"--host[=\s]+['\"]?([^\s'\"]+)")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def foreign_hosts(line: str) -> list[str]:
    """Hosts a shell/Python line names (URLs, ``--host``, bare IPv4 addresses) other than 127.0.0.1/localhost."""
    hosts = [m.group(1) for m in _URL.finditer(line)]
    hosts += [m.group(1) for m in _HOST_OPT.finditer(line)]
    hosts += [m.group(1) for m in _IPV4.finditer(line)]
    return [h for h in hosts if h.lower() not in LOCAL_HOSTS]


def test_host_scanner():
    assert foreign_hosts("gmg-infer --input rtsp://10.0.0.5/stream") == ["10.0.0.5", "10.0.0.5"]
    assert foreign_hosts("curl -sf http://example.com:8000/v2/health/ready") == ["example.com"]
    assert foreign_hosts("gmg-serve models --host 0.0.0.0") == ["0.0.0.0", "0.0.0.0"]
    assert foreign_hosts("x = 'https://[::1]:80/'") == ["[::1]"]
    assert foreign_hosts("gmg-infer --engine triton://127.0.0.1:8001/gmg_py --input seq.npy") == []
    assert foreign_hosts("curl -sf http://localhost:8000/v2/health/ready") == []
    assert foreign_hosts("gmg-export --opset 17 -o gmg_fc.onnx --in-shape 10,1,32,32") == []


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def with_free_ports(script: str, ports: dict[str, int]) -> str:
    """The README's Triton ports (``:8001``, ``--grpc-port 8001``...) replaced by free ones."""
    return re.sub(r"(?<=:)(800[012])\b|(?<=-port )(800[012])\b",
                  lambda m: str(ports[m.group(0)]), script)


# ---------------------------------------------------------------------------------------------- running
#: bash prologue: on any exit (an error included) stop the block's background jobs and wait for them
_STOP_JOBS = "trap 'for j in $(jobs -p); do kill $j 2>/dev/null || true; done; wait' EXIT\n"

_PY_DRIVER = (
    "import json, sys\n"
    "ns = {'__name__': '__main__'}\n"
    "for line, src in json.load(sys.stdin):\n"
    "    exec(compile(src, f'README.md:{line}', 'exec'), ns)\n"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("GMG_MEMORY_BUDGET_MB", None)
    return env


def _run(argv: list[str], cwd: Path, stdin: str | None, what: str) -> None:
    """Run one README step in its own session; on a timeout stop the whole session (servers included)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(stdin, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{what} ran past {BLOCK_TIMEOUT_S} s; output:\n{out[-4000:]}")
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}); output:\n{out[-4000:]}"


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _steps(blocks: list[Block]) -> list[tuple[str, list[Block]]]:
    """Bash blocks one by one; consecutive Python blocks together (one interpreter)."""
    steps: list[tuple[str, list[Block]]] = []
    for b in blocks:
        if b.lang == "python" and steps and steps[-1][0] == "python":
            steps[-1][1].append(b)
        elif b.lang in ("bash", "python"):
            steps.append((b.lang, [b]))
    return steps


def test_readme_blocks_run_in_order(tmp_path):
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    bad = [f"README.md line {b.line + i}: {h}" for b in blocks if b.lang in ("bash", "python")
           for i, ln in enumerate(b.text.splitlines()) if SKIP not in ln for h in foreign_hosts(ln)]
    assert not bad, "runnable README lines name hosts other than 127.0.0.1/localhost (mark them skipped):\n" + \
        "\n".join(bad)
    steps = _steps(blocks)
    assert [k for k, _ in steps].count("bash") >= 6, "README.md: expected its shell blocks"
    free = _free_ports(3)
    ports = {"8000": free[0], "8001": free[1], "8002": free[2]}
    for kind, group in steps:
        what = f"README.md {kind} block at line {group[0].line}"
        t0, cpu0 = time.monotonic(), _children_cpu_s()
        if kind == "bash":
            # a block that stops on an error still stops what it started in the background (gmg-serve)
            script = _STOP_JOBS + with_free_ports(group[0].runnable(), ports)
            _run(["bash", "-e", "-o", "pipefail", "-c", script], tmp_path, None, what)
        else:
            payload = json.dumps([[b.line, b.runnable()] for b in group])
            _run([sys.executable, "-c", _PY_DRIVER], tmp_path, payload, what)
        # shown with pytest -s (figures, never asserted)
        print(f"{what}: {time.monotonic() - t0:.1f} s wall, {_children_cpu_s() - cpu0:.1f} s CPU")
    # the outputs the blocks promise, with distinct names (nothing overwritten)
    for name in ("gmg-demo-out", "gmg_step.onnx", "gmg_step_pth.onnx", "preds_ort.npy", "step_int8_cpu.onnx",
                 "d8.onnx", "panel.mp4", "video_preds.npy", "models/gmg_py/config.pbtxt",
                 "models_gpu/gmg/config.pbtxt", "triton_preds.npy", "cpu.onnx"):
        assert (tmp_path / name).exists(), f"README run left no {name}"


# ---------------------------------------------------------------------------------------------- names
def _resolve(dotted: str) -> object:
    """``a.b.c``: the module, or the attribute chain on the longest importable module prefix."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, p in enumerate(parts[1:], 1):
        if hasattr(obj, p):
            obj = getattr(obj, p)
        else:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def _python_names(src: str) -> list[str]:
    """Dotted names a Python snippet imports, and attribute chains it reads on imported modules."""
    tree = ast.parse(src)
    names, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.append(a.name)
                modules[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                names.append(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, n = [], node
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id in modules and modules[n.id].startswith("gmg_deploy"):
                names.append(".".join([modules[n.id]] + chain[::-1]))
    return names


def test_readme_python_names_resolve():
    text = README.read_text(encoding="utf-8")
    names = [(b.line, n) for b in readme_blocks(text) if b.lang == "python" for n in _python_names(b.text)]
    # inline code in the prose: `from X import Y`, `import X`, `gmg_deploy.x.y` (calls and arguments dropped)
    for m in re.finditer(r"`([^`\n]+)`", text):
        code, line = m.group(1), text.count("\n", 0, m.start()) + 1
        if re.match(r"(from|import) \w", code):
            names += [(line, n) for n in _python_names(code)]
        elif re.match(r"gmg_deploy\.\w", code):
            names.append((line, re.match(r"[\w.]+", code).group(0).rstrip(".")))
    assert len(names) > 20
    bad = []
    for line, n in names:
        try:
            _resolve(n)
        except (ImportError, AttributeError) as e:
            bad.append(f"README.md line {line}: {n} ({type(e).__name__}: {e})")
    assert not bad, "\n".join(bad)


def test_readme_paths_exist():
    text = README.read_text(encoding="utf-8")
    paths = set(re.findall(r"\b((?:gmg_deploy|benchmarks|scripts|tests|docs)/[\w./-]*\w)", text))
    assert len(paths) > 10
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"


def test_readme_layout_names_every_package():
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    pkg = ROOT / "gmg_deploy"
    subpackages = [p.name for p in sorted(pkg.iterdir()) if (p / "__init__.py").exists()]
    modules = [p.name for p in sorted(pkg.glob("*.py")) if p.name != "__init__.py"]
    missing = [f"gmg_deploy/{n}/" for n in subpackages if f"gmg_deploy/{n}/" not in layout]
    missing += [m for m in modules if m not in layout]
    assert not missing, f"README.md's Layout section does not name {missing}"


# ---------------------------------------------------------------------------------------------- CLI table
def _commands() -> dict[str, object]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    out = {}
    for name, target in scripts.items():
        mod, attr = target.split(":")
        out[name] = getattr(importlib.import_module(mod), attr)
    return out


def _table_rows(text: str) -> dict[str, str]:
    section = text.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for ln in section.splitlines():
        m = re.match(r"\| `(gmg-[a-z]+)[^`]*` \|", ln)
        if m:
            rows[m.group(1)] = ln
    return rows


def test_cli_table_matches_help():
    rows = _table_rows(README.read_text(encoding="utf-8"))
    commands = _commands()
    assert sorted(rows) == sorted(commands), "the CLI table has one row per console script"
    bad = []
    for name, cmd in commands.items():
        row = rows[name]
        params = [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
        known = {o for p in params for o in (*p.opts, *p.secondary_opts)}
        # an option is in the row when one of its spellings is (``-o`` stands for ``--output``)
        absent = [p.opts[-1] for p in params if "--help" not in p.opts and not any(
            re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", row) for o in (*p.opts, *p.secondary_opts))]
        extra = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", row)) - known
        if absent:
            bad.append(f"{name}: --help has {sorted(absent)}, the README's CLI table does not")
        if extra:
            bad.append(f"{name}: the README's CLI table names {sorted(extra)}, which --help does not have")
    assert not bad, "\n".join(bad)


def test_ci_runs_the_readme_set_up_commands():
    """`.ci/run` runs exactly the README's two set-up commands (install; run the tests), in that order."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    block = text.split("## Set up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    readme = [ln.split("  #", 1)[0].strip() for ln in block.splitlines() if ln.strip()]
    ci = [ln.strip() for ln in (root / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert ci == readme
