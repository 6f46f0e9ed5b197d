"The `robustclip` command end to end: help, exit codes, one-line errors, and the clean zero-shot JSON on mini-base."

import json
import os
import subprocess
import sys

import pytest

from robustclip.app.cli import COMMANDS, available_commands, main


def _run(*args, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "robustclip", *args], capture_output=True, text=True, env=e)


def test_help_lists_every_installed_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in available_commands():
        assert name.split()[0] in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name, capsys):
    if name not in available_commands():
        pytest.skip(f"{name}: module not installed yet")
    with pytest.raises(SystemExit) as e:
        main([*name.split(), "--help"])
    assert e.value.code == 0
    assert "usage: robustclip " + name in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["eval", "zeroshot", "--model", "ViT-L-41", "--dataset", "mini/digit"], "unknown model 'ViT-L-41'"),
        (["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "no-such-set"], "unknown dataset"),
        (
            ["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "cifar10", "--data-root", "/nonexistent"],
            "CLIP_benchmark layout",
        ),
        (
            ["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "mini/digit", "--batch-size", "0"],
            "--batch-size",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and err[0].startswith("robustclip eval zeroshot: error:")


def test_console_script_exit_codes():
    r = _run("eval", "zeroshot", "--model", "nope-model", "--dataset", "mini/digit")
    assert r.returncode == 2 and "unknown model" in r.stderr
    r = _run("--bogus-flag")
    assert r.returncode == 2


def test_eval_zeroshot_mini_base_writes_clip_benchmark_json(tmp_path, mini_base):
    out = tmp_path / "r.json"
    assert main(["eval", "zeroshot", "--model", "mini-base", "--dataset", "mini/color", "--output", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["dataset"] == "mini/color" and rec["model"] == "mini-base" and rec["task"] == "zeroshot_classification"
    assert {"acc1", "acc5", "mean_per_class_recall"} <= set(rec["metrics"])
    assert rec["metrics"]["acc1"] >= 0.85, rec["metrics"]
    assert {"torch", "open_clip_torch", "robustclip"} <= set(rec["versions"])
