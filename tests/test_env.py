"The pinned environment is stated once and repeated consistently: requirements.txt, environment.yml, Makefile, README."

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, ver = line.partition("==")
        assert ver, f"unpinned requirement: {line!r}"
        out[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return out


def test_environment_yml_matches_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == req
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"


def test_makefile_installs_the_pinned_set():
    mk = (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements-lock.txt" in mk and "pip check" in mk
    assert "--no-deps -r requirements-nodeps.txt" in mk and "-r requirements.txt" in mk  # `make lock` resolves it
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_the_lock_pins_what_requirements_pins():
    "Every requirement of requirements.txt is in requirements-lock.txt at the same version (the lock is its closure)."
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lock = _pins((ROOT / "requirements-lock.txt").read_text().splitlines())
    assert {k: lock.get(k) for k in req} == req
    assert "torchattacks" not in lock and "robustclip" not in lock and len(lock) > 150  # the benchmark peer: nodeps


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:15]
    text = "\n".join(head)
    assert "make reproduce" in text and "make test" in text


def test_nbdev_keeps_papermill_tags():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nbdev"]
    assert "tags" in cfg["allowed_cell_metadata_keys"]
    assert {"slow", "gpu"} <= set(cfg["tst_flags"].split())


def test_a_hung_test_is_a_named_failure_not_a_hang(tmp_path):
    "make test's pytest options (pyproject's timeout, the Makefile's xdist flags) fail a hung test and finish the run."
    mk = (ROOT / "Makefile").read_text()
    flags = re.search(r"\$\(BIN\)/pytest (-n 2 --dist loadgroup [^\n]*?) --durations", mk).group(1).split()
    (tmp_path / "test_h.py").write_text(
        "import subprocess, sys, time, pytest\n"
        "@pytest.mark.parametrize('i', range(4))\n"
        "def test_quick(i): time.sleep(0.2)\n"
        "def test_hung(): subprocess.run([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "@pytest.mark.xdist_group('g')\n"
        "def test_grouped(): pass\n"
    )
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *flags, "-o", "timeout=3", "test_h.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert time.time() - t0 < 120, r.stdout[-2000:]
    assert r.returncode == 1 and "1 failed, 5 passed" in r.stdout, r.stdout[-2000:]
    assert "FAILED test_h.py::test_hung - Failed: Timeout" in r.stdout  # named, with its stack above
