"""The wheel works on its own: built offline, installed into a fresh venv with no source tree and no editable install
on `sys.path`, it ships every file of the package (model_configs/*.json, ...), and its console script, `python -m
robustclip` and `load_clip` run from there.

A venv with torch takes minutes to install, so the fresh venv borrows the test interpreter's site-packages for the
*dependencies*: a `.pth` line adds that folder to `sys.path`, and `.pth` files found inside a folder added that way
are not processed, so the editable install of robustclip living there (its own `.pth` finder) stays inactive. The
test checks this (`robustclip.__file__` must lie in the fresh venv) rather than trusting it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "robustclip"
# never shipped, never needed at run time; anything else under robustclip/ must be in the wheel
NOT_SHIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints"}
NOT_SHIPPED_SUFFIXES = {".pyc", ".pyo"}


def _need_build_backend():
    "Skip (not fail) only when this interpreter cannot build a wheel at all."
    setuptools = pytest.importorskip("setuptools", reason="setuptools is not installed: cannot build the wheel")
    major_minor = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if major_minor < (70, 1):  # setuptools >= 70.1 builds wheels itself; older ones need the `wheel` package
        pytest.importorskip("wheel", reason=f"setuptools {setuptools.__version__} needs the `wheel` package")


def _source_files() -> list[str]:
    "The files a clean checkout would hold: tracked + untracked-but-not-ignored (so no build/, .venv, caches)."
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True
        ).stdout.decode()
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist, say): everything but outputs
        skip = {".git", ".venv", "build", "dist", ".cache", "runs", *NOT_SHIPPED_DIRS}
        files = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file()
            and not skip & set(p.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
        ]
    return sorted(f for f in files if (ROOT / f).is_file())  # a tracked file deleted in the work tree is gone


def _package_files(files: list[str]) -> set[str]:
    return {
        f
        for f in files
        if f.startswith(PKG + "/")
        and not NOT_SHIPPED_DIRS & set(Path(f).parts)
        and Path(f).suffix not in NOT_SHIPPED_SUFFIXES
    }


def _clean_env(**extra) -> dict[str, str]:
    "No PYTHONPATH / venv variables leaking the source tree in; CPU only, quiet, one thread."
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    }
    env.update(
        PYTHONNOUSERSITE="1",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        ROBUSTCLIP_PROGRESS="0",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def _run(cmd, cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"`{' '.join(map(str, cmd))}` exited {res.returncode} (cwd {cwd})\n"
        f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-4000:]}"
    )
    return res.stdout


def _build_wheel(tmp: Path, files: list[str], env: dict[str, str]) -> Path:
    """`pip wheel --no-deps --no-build-isolation` offline, from a copy of the checkout's files: building in the repo
    itself reuses its build/lib, where setuptools keeps modules that were since moved or deleted, so a wheel built
    there can ship (and hide the loss of) files the source no longer has."""
    src = tmp / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, "."],
        cwd=src,
        env=env,
    )
    wheels = list(dist.glob(f"{PKG}-*.whl"))
    assert len(wheels) == 1, f"expected one {PKG} wheel in {dist}, found {[w.name for w in dist.iterdir()]}"
    return wheels[0]


def _fresh_venv(tmp: Path, env: dict[str, str]) -> tuple[Path, Path]:
    "A venv without pip whose only link to the test environment is one `.pth` line naming its site-packages."
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp, env=env).strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # this interpreter's, in order
    (site / "_test_environment_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return py, site


CHECK_INSTALL = """
import importlib.metadata as md, json, sys
from pathlib import Path
import robustclip, robustclip.models
site = Path(sys.argv[1]).resolve()
dist = md.distribution("robustclip")
eps = [ep for ep in dist.entry_points if ep.group in ("console_scripts", "robustclip.plugins")]
loaded = {}
for ep in eps:
    try: ep.load(); loaded[f"{ep.group}:{ep.name}"] = "ok"
    except Exception as e: loaded[f"{ep.group}:{ep.name}"] = f"{ep.value} does not load: {type(e).__name__}: {e}"
print(json.dumps(dict(
    files=[robustclip.__file__, robustclip.models.__file__], site=str(site), dist=str(dist.locate_file("")),
    entry_points={ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}, loaded=loaded,
    path=sys.path)))
"""


def test_wheel_installs_and_runs_alone(tmp_path: Path):
    import json

    _need_build_backend()
    env = _clean_env(ROBUSTCLIP_HOME=str(tmp_path / "home"))
    files = _source_files()
    whl = _build_wheel(tmp_path, files, env)

    # 1. contents: every file of the package in the source (.py, model_configs/*.json, ...) and the licence
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
    missing = sorted(_package_files(files) - names)
    assert not missing, (
        f"{whl.name} lacks {len(missing)} file(s) the source has under {PKG}/: {missing}\n"
        "add a pattern for them to [tool.setuptools.package-data] in pyproject.toml"
    )
    # the shipped mini fine-tunes (70 MB) are the repository's reproduction assets (assets/finetunes/), not package data
    assert not [n for n in names if "finetunes/" in n or n.startswith("assets/")], f"{whl.name} carries fine-tunes"
    assert any(f"{PKG}/model_configs/" in n and n.endswith(".json") for n in names), "no model_configs/*.json"
    shipped = [n for n in names if n.startswith(f"{PKG}/mini/weights/") and n.endswith(".safetensors")]
    assert len(shipped) >= 2 and f"{PKG}/mini/weights/manifest.json" in names, f"no shipped mini weights: {shipped}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], "compiled files in the wheel"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), f"no LICENSE in {whl.name}'s dist-info"
    ep_txt = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    assert ep_txt, f"{whl.name} has no entry_points.txt"
    with zipfile.ZipFile(whl) as z:
        entry_points = z.read(ep_txt).decode()
    scripts = entry_points.split("[console_scripts]", 1)[-1].split("\n[", 1)[0]
    assert "[console_scripts]" in entry_points and any(
        line.split("=")[0].strip() == PKG for line in scripts.splitlines() if "=" in line
    ), f"no `{PKG}` console script in {ep_txt}:\n{entry_points}"

    # 2. a fresh venv; pip comes from the borrowed site-packages, runs as the venv's python, so it installs into
    #    the venv and writes bin/robustclip for it (--ignore-installed: never touch the borrowed editable install)
    py, site = _fresh_venv(tmp_path, env)
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()  # an empty cwd: '' on sys.path must not find a source tree
    _run(
        [py, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-compile", whl],
        cwd=run_dir,
        env=env,
    )

    # 3. robustclip imports from the venv, not from the checkout, and its entry points load
    info = json.loads(_run([py, "-c", CHECK_INSTALL, site], cwd=run_dir, env=env).strip().splitlines()[-1])
    for f in info["files"]:
        assert Path(f).resolve().is_relative_to(site.resolve()), (
            f"robustclip imported from {f}, not from the fresh venv's {site} (sys.path: {info['path']})"
        )
    assert not [p for p in info["path"] if p and Path(p).resolve() == ROOT], (
        f"the checkout is on sys.path: {info['path']}"
    )
    assert Path(info["dist"]).resolve() == site.resolve(), f"robustclip's metadata found at {info['dist']}, not {site}"
    assert PKG in info["entry_points"], f"installed dist has no `{PKG}` console script: {info['entry_points']}"
    bad = {k: v for k, v in info["loaded"].items() if v != "ok"}
    assert not bad, f"entry points in pyproject.toml that do not load from the wheel: {bad}"

    # 4. the commands a user runs
    script = py.parent / PKG
    assert script.exists(), f"pip did not write the `{PKG}` console script into {py.parent}"
    for cmd in ([script, "--help"], [py, "-m", PKG, "--help"]):
        out = _run(cmd, cwd=run_dir, env=env)
        assert "usage" in out.lower(), f"`{' '.join(map(str, cmd))}` printed no usage:\n{out}"
    out = _run(
        [py, "-c", "from robustclip.models import load_clip; m = load_clip('RC-Tiny-ViT'); print(m.embed_dim)"],
        cwd=run_dir,
        env=env,
    )
    assert out.strip().splitlines()[-1].isdigit(), f"load_clip('RC-Tiny-ViT') from the wheel printed {out!r}"

    # 5. the shipped mini-base, from the wheel into an empty cache: copied and checked, not pretrained
    out = _run(
        [
            py,
            "-c",
            "import json, time; t = time.time(); from robustclip.models import load_clip; "
            "from robustclip.mini.pretrain import mini_base_dir; load_clip('mini-base'); d = mini_base_dir(); "
            "print(json.loads((d/'sha256.json').read_text())['source'], "
            "json.loads((d/'report.json').read_text())['zeroshot_acc1']['mini/digit'], round(time.time() - t))",
        ],
        cwd=run_dir,
        env=env,
    )
    source, digit, secs = out.split()[-3:]
    assert (source, digit) == ("shipped", "0.893") and int(secs) < 120, f"mini-base from the wheel: {out!r}"
