"""Bad input, command by command: exit code 2, one line on stderr saying what is wrong, and nothing created or changed.

Table-driven: each case names the command line (`{d}` is a fresh folder), the files to put there first, and a piece
of the expected line. Every case fails before a model loads or, where a model is needed to find the fault (a broken
checkpoint), with the tiny random RC-Tiny-ViT, so the table runs in seconds. Below it, the faults that need a real
run: an output written by other settings, a concurrent writer, a damaged sidecar, an unwritable output folder.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from robustclip.app.cli import main
from robustclip.core import exclusive

ROOT = Path(__file__).resolve().parents[1]
GOOD_PT = {"w": torch.zeros(4)}


def _files(**kw):
    "Files to create in the case folder: name -> bytes, str, None (a folder) or a callable(path)."
    return kw


def _torch_file(p: Path):
    torch.save(GOOD_PT, p)


def _truncated(p: Path):
    torch.save(GOOD_PT, p)
    p.write_bytes(p.read_bytes()[:200])


LATIN = "text,label\nblue sky,1\ncafé rouge,0\n".encode("latin-1")
CFG = "method: fare\nmodel: RC-Tiny-ViT\npretrained: null\ndataset: mini/position\nsteps: 2\n"
ZS = ["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "mini/digit"]
TXT = ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "mini/text"]
RET = ["eval", "retrieval", "--model", "RC-Tiny-ViT", "--dataset", "mini/retrieval"]
VLM = ["eval", "vlm", "--vlm", "mini-llava", "--vision", "RC-Tiny-ViT", "--dataset", "mini/captions"]
T2I = ["eval", "t2i", "--generator", "mini-t2i", "--text-encoder", "RC-Tiny-ViT", "--dataset", "mini/retrieval"]
INV = ["eval", "inversion", "--model", "RC-Tiny-ViT", "--dataset", "mini/retrieval"]

CASES = {  # id -> (argv, files, expected piece of the line)
    # eval zeroshot: outputs, budgets, flags without an attack, checkpoints, local-dir folders, tasks of another kind
    "zs-output-is-folder": (ZS + ["--output", "{d}/adir"], _files(adir=None), "is a folder"),
    "zs-output-through-file": (ZS + ["--output", "{d}/afile/r.json"], _files(afile="x"), "is a file, not a folder"),
    "zs-eps-div-zero": (ZS + ["--eps", "4/0"], {}, "divides by zero"),
    "zs-eps-bare-4": (ZS + ["--eps", "4"], {}, "did you mean '4/255'"),
    "zs-eps-words": (ZS + ["--eps", "four"], {}, "not a number"),
    "zs-eps-negative": (ZS + ["--eps=-1/255"], {}, ">= 0"),
    "zs-iterations-no-attack": (ZS + ["--iterations", "5"], {}, "--iterations does nothing with no attack"),
    "zs-restarts-no-attack": (ZS + ["--restarts", "2"], {}, "--restarts does nothing"),
    "zs-norm-no-attack": (ZS + ["--norm", "l2"], {}, "--norm does nothing"),
    "zs-precision-no-attack": (ZS + ["--precision", "bf16"], {}, "--precision does nothing"),
    "zs-n-samples-zero": (ZS + ["--n-samples", "0"], {}, "--n-samples must be positive"),
    "zs-attack-without-eps": (ZS + ["--attack", "apgd-ce"], {}, "needs --eps"),
    "zs-unknown-dataset": (
        ["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "no-such-set"],
        {},
        "unknown dataset",
    ),
    "zs-text-task": (
        ["eval", "zeroshot", "--model", "RC-Tiny-ViT", "--dataset", "mini/text"],
        {},
        "mini/text is not an image classification task",
    ),
    "zs-empty-pt": (ZS + ["--pretrained", "{d}/empty.pt"], _files(**{"empty.pt": b""}), "is empty (0 bytes)"),
    "zs-random-pt": (
        ZS + ["--pretrained", "{d}/rand.pt"],
        _files(**{"rand.pt": bytes(range(7, 250)) * 20}),
        "is not a checkpoint",
    ),
    "zs-text-as-pt": (ZS + ["--pretrained", "{d}/notes.pt"], _files(**{"notes.pt": "hello\n"}), "is not a checkpoint"),
    "zs-truncated-pt": (ZS + ["--pretrained", "{d}/cut.pt"], _files(**{"cut.pt": _truncated}), "truncated or damaged"),
    "zs-missing-pt": (ZS + ["--pretrained", "{d}/none.pt"], {}, "not found"),
    "zs-foreign-state-dict": (
        ZS + ["--pretrained", "{d}/other.pt"],
        _files(**{"other.pt": _torch_file}),
        "does not fit",
    ),
    "zs-local-dir-garbled-json": (
        ["eval", "zeroshot", "--model", "local-dir:{d}/m", "--dataset", "mini/digit"],
        _files(m=None, **{"m/open_clip_config.json": '{"model_cfg": {"embed'}),
        "open_clip_config.json is not valid JSON",
    ),
    "zs-local-dir-latin-json": (
        ["eval", "zeroshot", "--model", "local-dir:{d}/m", "--dataset", "mini/digit"],
        _files(m=None, **{"m/open_clip_config.json": '{"name": "café"}'.encode("latin-1")}),
        "not UTF-8",
    ),
    "zs-local-dir-no-config": (
        ["eval", "zeroshot", "--model", "local-dir:{d}/m", "--dataset", "mini/digit"],
        _files(m=None),
        "has no open_clip_config.json",
    ),
    # eval text
    "text-k-without-attack": (TXT + ["--attack", "none", "--k", "3"], {}, "--k does nothing with --attack none"),
    "text-positions-without-attack": (
        TXT + ["--attack", "none", "--n-positions", "3", "--alphabet", "abc"],
        {},
        "--n-positions, --alphabet do nothing",
    ),
    "text-header-only-csv": (
        ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "textcsv:{d}/h.csv"],
        _files(**{"h.csv": "text,label\n"}),
        "has a header (text, label) but no rows",
    ),
    "text-latin1-csv": (
        ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "textcsv:{d}/l.csv", "--label-encoder", "text"],
        _files(**{"l.csv": LATIN}),
        "l.csv, line 3: not UTF-8",
    ),
    "text-empty-csv": (
        ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "textcsv:{d}/e.csv"],
        _files(**{"e.csv": ""}),
        "is empty",
    ),
    "text-missing-csv": (
        ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "textcsv:{d}/none.csv"],
        {},
        "not found",
    ),
    "text-output-is-folder": (TXT + ["--output", "{d}"], {}, "is a folder"),
    "text-negative-k": (TXT + ["--k=-1"], {}, "--k must be an integer >= 0"),
    "text-image-task": (
        ["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "mini/digit"],
        {},
        "is not a text classification task",
    ),
    # eval retrieval
    "ret-apgd-zero-steps": (RET + ["--attack", "apgd", "--steps", "0"], {}, "--steps must be a positive integer"),
    "ret-steps-without-apgd": (RET + ["--steps", "5"], {}, "--steps does nothing with --attack charmer"),
    "ret-eps-without-apgd": (RET + ["--attack", "none", "--eps", "4/255"], {}, "--eps does nothing"),
    "ret-k-with-apgd": (RET + ["--attack", "apgd", "--k", "1"], {}, "--k does nothing with --attack apgd"),
    "ret-target-with-none": (RET + ["--attack", "none", "--target", "1"], {}, "--target does nothing"),
    "ret-apgd-eps-div-zero": (RET + ["--attack", "apgd", "--eps", "4/0"], {}, "divides by zero"),
    "ret-target-out-of-range": (RET + ["--target", "7"], {}, "--target index must be 0..2"),
    "ret-output-through-file": (RET + ["--output", "{d}/f/r.json"], _files(f="x"), "is a file, not a folder"),
    # train
    "train-empty-config": (["train", "{d}/c.yaml"], _files(**{"c.yaml": ""}), "c.yaml is empty"),
    "train-comment-only-config": (["train", "{d}/c.yaml"], _files(**{"c.yaml": "# to do\n"}), "is empty"),
    "train-latin1-config": (
        ["train", "{d}/c.yaml"],
        _files(**{"c.yaml": "method: fare\nname: café\n".encode("latin-1")}),
        "c.yaml, line 2: not UTF-8",
    ),
    "train-invalid-yaml": (["train", "{d}/c.yaml"], _files(**{"c.yaml": "method: [fare\n"}), "is not valid YAML"),
    "train-list-config": (["train", "{d}/c.yaml"], _files(**{"c.yaml": "- fare\n"}), "must hold a mapping"),
    "train-unknown-key": (["train", "{d}/c.yaml", "stepz=3"], _files(**{"c.yaml": CFG}), "stepz"),
    "train-missing-config": (["train", "{d}/none.yaml"], {}, "none.yaml"),
    "train-output-through-file": (
        ["train", "{d}/c.yaml", "output_dir={d}/f/run"],
        _files(f="x", **{"c.yaml": CFG}),
        "output_dir {d}/f/run cannot be created",
    ),
    "train-resume-random-bytes": (
        ["train", "{d}/c.yaml", "output_dir={d}/run", "--resume", "{d}/r.pt"],
        _files(run=None, **{"c.yaml": CFG, "r.pt": b"\x00" * 100}),
        "is not a checkpoint",
    ),
    "train-resume-missing": (
        ["train", "{d}/c.yaml", "output_dir={d}/run", "--resume", "{d}/none.pt"],
        _files(run=None, **{"c.yaml": CFG}),
        "resume checkpoint not found",
    ),
    "train-eps-div-zero": (["train", "{d}/c.yaml", "eps=4/0"], _files(**{"c.yaml": CFG}), "divides by zero"),
    # export and push-to-hub
    "export-existing-output": (
        ["export", "--model", "RC-Tiny-ViT", "--output", "{d}/out"],
        _files(out=None, **{"out/keep.txt": "mine"}),
        "already holds 1 file(s) (keep.txt)",
    ),
    "export-output-through-file": (
        ["export", "--model", "RC-Tiny-ViT", "--output", "{d}/f/out"],
        _files(f="x"),
        "is a file, not a folder",
    ),
    "export-output-is-file": (
        ["export", "--model", "RC-Tiny-ViT", "--output", "{d}/f"],
        _files(f="x"),
        "is a file, not a folder",
    ),
    "export-run-not-a-run": (["export", "--run", "{d}/nowhere", "--output", "{d}/out"], {}, "is it a training run?"),
    "export-two-sources": (
        ["export", "--model", "RC-Tiny-ViT", "--run", "{d}", "--output", "{d}/out"],
        {},
        "name exactly one source",
    ),
    "export-random-checkpoint": (
        ["export", "--model", "RC-Tiny-ViT", "--pretrained", "{d}/r.pt", "--output", "{d}/out"],
        _files(**{"r.pt": bytes(range(7, 250)) * 4}),
        "is not a checkpoint",
    ),
    "hub-dry-run-existing": (
        ["push-to-hub", "--model", "RC-Tiny-ViT", "--repo-id", "me/x", "--dry-run", "{d}/hub"],
        _files(hub=None, **{"hub/README.md": "old"}),
        "--dry-run {d}/hub already holds",
    ),
    "hub-bad-repo-id": (
        ["push-to-hub", "--model", "RC-Tiny-ViT", "--repo-id", "noslash", "--dry-run", "{d}/hub"],
        {},
        "org/name",
    ),
    # eval vlm: backends, tasks of another kind, attack flags that need each other
    "vlm-unknown-backend": (["eval", "vlm", "--vlm", "no-such:x", "--dataset", "mini/captions"], {}, "unknown LVLM"),
    "vlm-unknown-dataset": (VLM[:-1] + ["no-such-set"], {}, "unknown dataset"),
    "vlm-unknown-attack": (VLM + ["--attack", "nope", "--eps", "4/255"], {}, "invalid choice: 'nope'"),
    "vlm-target-without-attack": (VLM + ["--target", "hello"], {}, "--target need(s) --attack"),
    "vlm-targeted-without-target": (VLM + ["--attack", "targeted", "--eps", "4/255"], {}, "--target is needed"),
    "vlm-attack-without-eps": (VLM + ["--attack", "ensemble"], {}, "needs --eps"),
    "vlm-eps-without-attack": (VLM + ["--eps", "4/255"], {}, "--eps need(s) --attack"),
    "vlm-steps-without-attack": (VLM + ["--steps", "5"], {}, "--steps need(s) --attack"),
    "vlm-eps-bare-4": (VLM + ["--attack", "apgd", "--eps", "4"], {}, "did you mean '4/255'"),
    "vlm-vqa-task-on-captions": (VLM + ["--task", "vqa"], {}, "is a caption task, not vqa"),
    "vlm-n-samples-zero": (VLM + ["--n-samples", "0"], {}, "--n-samples must be positive"),
    "vlm-batch-size-zero": (VLM + ["--batch-size", "0"], {}, "--batch-size must be a positive integer"),
    "vlm-pope-file-missing": (VLM[:-1] + ["pope:{d}/none.json"], {}, "annotation file not found"),
    "vlm-llava-folder-missing": (
        ["eval", "vlm", "--vlm", "llava-hf:{d}/nofolder", "--vision", "RC-Tiny-ViT", "--dataset", "mini/captions"],
        {},
        "cannot load llava-hf:",
    ),
    # eval t2i: generators, judges, prompt sources, Charmer's settings
    "t2i-unknown-generator": (
        ["eval", "t2i", "--generator", "no-such:x", "--dataset", "mini/retrieval"],
        {},
        "unknown generator",
    ),
    "t2i-sd-folder-missing": (
        ["eval", "t2i", "--generator", "sd:{d}/nofolder", "--dataset", "mini/retrieval"],
        {},
        "cannot load the Stable Diffusion pipeline",
    ),
    "t2i-unknown-dataset": (T2I[:-1] + ["no-such"], {}, "unknown dataset"),
    "t2i-caption-file-missing": (T2I[:-1] + ["captions:{d}/none.txt"], {}, "caption file not found"),
    "t2i-unknown-judge": (T2I + ["--judge", "no-such"], {}, "unknown model 'no-such'"),
    "t2i-n-samples-negative": (T2I + ["--n-samples", "-1"], {}, "--n-samples must be positive"),
    "t2i-n-positions-zero": (T2I + ["--n-positions", "0"], {}, "--n-positions must be a positive integer"),
    "t2i-unknown-objective": (T2I + ["--objective", "nope"], {}, "invalid choice: 'nope'"),
    # eval inversion, eval textfare
    "inversion-unknown-dataset": (INV[:-1] + ["no-such"], {}, "unknown dataset"),
    "inversion-steps-zero": (INV + ["--steps", "0"], {}, "--steps must be a positive integer"),
    "inversion-unknown-vocab": (INV + ["--vocab", "nope"], {}, "invalid choice: 'nope'"),
    "inversion-caption-file-missing": (INV[:-1] + ["captions:{d}/none.txt"], {}, "caption file not found"),
    "inversion-n-samples-zero": (INV + ["--n-samples", "0"], {}, "--n-samples must be positive"),
    "textfare-unknown-dataset": (
        ["eval", "textfare", "--model", "RC-Tiny-ViT", "--dataset", "no-such"],
        {},
        "unknown dataset",
    ),
    # card, leaderboard, fixtures, doctor
    "card-unknown-model": (["card", "--model", "no-such-model", "--output", "{d}/c"], {}, "unknown model"),
    "card-unknown-scale": (["card", "--model", "mini-base", "--scale", "huge", "--output", "{d}/c"], {}, "--scale"),
    "card-unknown-zoo-entry": (["card", "--model", "zoo:no-such", "--output", "{d}/c"], {}, "no zoo entry"),
    "card-compare-unknown": (
        ["card", "--model", "mini-base", "--compare", "no-such", "--output", "{d}/c"],
        {},
        "no zoo entry",
    ),
    "card-unknown-lvlm": (["card", "--model", "mini-base", "--vlm", "no-such:x", "--output", "{d}/c"], {}, "LVLM"),
    "leaderboard-missing-file": (["leaderboard", "{d}/bad.json"], {}, "does not exist"),
    "leaderboard-no-records": (["leaderboard", "{d}"], {}, "no result JSON"),
    "fixtures-scale-without-plan": (["fixtures", "--scale", "nope", "{d}/fx"], {}, "has none"),
    "fixtures-root-without-configs": (["fixtures", "--root", "{d}", "{d}/fx"], {}, "has no configs/"),
    "doctor-scale-without-plan": (["doctor", "--scale", "nope"], {}, "no plan configs/nope/reproduce.yaml"),
    "doctor-data-root-missing": (["doctor", "--scale", "paper", "--data-root", "{d}/none"], {}, "is not a folder"),
    # zoo, pretrain-mini: an option they do not have
    "zoo-unknown-option": (["zoo", "--name", "x"], {}, "unrecognized arguments: --name"),
    "pretrain-mini-unknown-option": (["pretrain-mini", "--steps", "x"], {}, "unrecognized arguments"),
    # reproduce (more), export --format
    "reproduce-scale-without-plan": (["reproduce", "--scale", "nope", "--dry-run"], {}, "no plan"),
    "reproduce-threads-zero": (["reproduce", "--root", str(ROOT), "--dry-run", "--threads", "0"], {}, "positive"),
    "reproduce-seed-not-int": (["reproduce", "--root", str(ROOT), "--dry-run", "--seed", "x"], {}, "invalid int"),
    "export-unknown-format": (
        ["export", "--format", "nope", "--model", "RC-Tiny-ViT", "--output", "{d}/x"],
        {},
        "invalid choice: 'nope'",
    ),
    # reproduce
    "reproduce-only-matches-nothing": (
        ["reproduce", "--root", str(ROOT), "--dry-run", "--only", "no-such-step", "--runs", "{d}/runs"],
        {},
        "matches no step",
    ),
    "reproduce-no-configs": (["reproduce", "--root", "{d}", "--dry-run"], {}, "has no configs/"),
}


def _make(d: Path, files: dict) -> None:
    for name, v in files.items():
        p = d / name
        if v is None:
            p.mkdir(parents=True, exist_ok=True)
        elif callable(v):
            p.parent.mkdir(parents=True, exist_ok=True)
            v(p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            (p.write_bytes if isinstance(v, bytes) else p.write_text)(v)


def _state(d: Path) -> dict:
    "Every path under d with its size and modification time: what 'nothing created or changed' compares."
    return {
        str(p.relative_to(d)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
        for p in d.rglob("*")
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, capsys):
    argv, files, piece = CASES[case]
    d = tmp_path / "case"
    d.mkdir()
    _make(d, files)
    before = _state(d)
    try:
        code = main([a.replace("{d}", str(d)) for a in argv])
    except SystemExit as e:  # what argparse itself refuses exits from inside main; the shell sees the same code
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (case, err)
    assert len(err) == 1, err
    assert err[0].startswith("robustclip ") and ": error: " in err[0] and "Traceback" not in err[0]
    assert piece.replace("{d}", str(d)) in err[0], err[0]
    assert len(err[0]) < 1000, f"{len(err[0])} characters"  # a line, not a dump (a task object was 66 KB)
    assert _state(d) == before


def test_the_table_covers_every_command():
    commands = {" ".join(argv[:2]) if argv[0] == "eval" else argv[0] for argv, _, _ in CASES.values()}
    assert commands == {
        "eval zeroshot",
        "eval text",
        "eval retrieval",
        "train",
        "export",
        "push-to-hub",
        "reproduce",
        "eval vlm",
        "eval t2i",
        "eval inversion",
        "eval textfare",
        "card",
        "leaderboard",
        "fixtures",
        "doctor",
        "zoo",
        "pretrain-mini",
    }, commands
    assert len(CASES) >= 100, len(CASES)


# ---------------------------------------------------------------- faults that need a real run (mini-base, seconds)
CLEAN = ["eval", "zeroshot", "--model", "mini-base", "--dataset", "mini/color"]


def test_other_settings_on_one_output_are_refused_until_overwrite(tmp_path, mini_base, capsys):
    out = tmp_path / "r.json"
    assert main(CLEAN + ["--n-samples", "16", "--output", str(out)]) == 0
    first = out.read_bytes()
    rec = json.loads(first)
    assert rec["metrics"]["n"] == 16 and rec["versions"]["cuda"] is None  # no GPU here: no CUDA version claimed
    assert main(CLEAN + ["--n-samples", "16", "--output", str(out)]) == 0  # the same settings: fine (resumes)
    capsys.readouterr()
    same = out.read_bytes()
    assert main(CLEAN + ["--n-samples", "24", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a result of other settings" in err[0] and "--overwrite" in err[0], err
    assert out.read_bytes() == same and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert main(CLEAN + ["--n-samples", "24", "--output", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["metrics"]["n"] == 24


def test_interrupted_sidecar_of_other_settings_is_refused(tmp_path, mini_base, capsys):
    out = tmp_path / "a.json"
    atk = ["--eps", "8/255", "--attack", "apgd-ce", "--iterations", "2", "--restarts", "1", "--batch-size", "8"]
    from robustclip.eval.zeroshot import eval_zeroshot

    part = eval_zeroshot(
        mini_base,
        "mini/color",
        n_samples=16,
        eps="8/255",
        attack="apgd-ce",
        iterations=2,
        restarts=1,
        batch_size=8,
        output=out,
        max_batches=1,
    )
    assert part["complete"] is False and not out.exists()
    side = tmp_path / "a.samples.jsonl"
    before = side.read_bytes()
    assert main(CLEAN + atk[:-2] + ["--batch-size", "4", "--n-samples", "16", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "belongs to an evaluation with other settings (settings that differ: batch_size)" in err[0]
    ), err
    assert side.read_bytes() == before and not out.exists()
    assert main(CLEAN + atk + ["--n-samples", "16", "--output", str(out)]) == 0  # its own settings resume it
    assert json.loads(out.read_text())["resumed_batches"] == 1


def test_a_result_being_written_is_refused(tmp_path, mini_base, capsys):
    out = tmp_path / "r.json"
    with exclusive(out):  # as another process writing r.json right now
        assert main(CLEAN + ["--n-samples", "8", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "being written by another robustclip process" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_line_without_its_key_is_recomputed(tmp_path, mini_base, capsys):
    out = tmp_path / "a.json"
    args = CLEAN + [
        "--eps",
        "8/255",
        "--attack",
        "apgd-ce",
        "--iterations",
        "2",
        "--restarts",
        "1",
        "--batch-size",
        "8",
        "--n-samples",
        "16",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    once = json.loads(out.read_text())["metrics"]
    side = tmp_path / "a.samples.jsonl"
    lines = side.read_text().splitlines()
    line = json.loads(lines[2])
    del line["batch"]
    lines[2] = json.dumps(line)
    side.write_text("\n".join(lines) + "\n")
    out.unlink()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustclip: warning:") and "line 3: not a batch line" in err[0], err
    rec = json.loads(out.read_text())
    assert rec["resumed_batches"] == 1 and rec["metrics"] == once


def test_an_unwritable_output_is_refused_before_any_model_loads(tmp_path, monkeypatch, capsys):
    import robustclip.core
    import robustclip.eval.zeroshot as zs

    real = os.access
    monkeypatch.setattr(
        robustclip.core.os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real(p, mode)
    )
    monkeypatch.setattr(zs, "resolve_model", lambda *a, **k: pytest.fail("a model was loaded before the output check"))
    (tmp_path / "ro").mkdir()
    assert main(CLEAN + ["--output", str(tmp_path / "ro" / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable" in err[0], err


def test_reproduce_dry_run_honours_only_and_help_has_no_stale_timing(capsys, tmp_path):
    assert main(["reproduce", "--root", str(ROOT), "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    every = capsys.readouterr().out.strip().splitlines()
    assert (
        main(["reproduce", "--root", str(ROOT), "--dry-run", "--only", "table14", "--runs", str(tmp_path / "runs")])
        == 0
    )
    only = capsys.readouterr().out.strip().splitlines()
    assert any("notebook/table14_drift" in l for l in only) and not any("notebook/claims" in l for l in only)
    assert len(only) < len(every)
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    assert "~15 min" not in capsys.readouterr().out
