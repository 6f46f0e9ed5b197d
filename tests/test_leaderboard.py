"""`robustclip leaderboard`: result files of this package, CLIP_benchmark and RobustVLM's adversarial CLIP_benchmark
read into one ranked table, each row's protocol shown, a warning where rows were measured under different protocols.

The records are written by `robustclip.results.result_record` (this package's) or copied from the formats the other
tools write (a RobustVLM file as Sim-CLIP's repository commits it; a CLIP_benchmark clean record).
"""

import json
from pathlib import Path

import pytest

from robustclip.app.cli import main
from robustclip.core import RobustClipError
from robustclip.leaderboard import leaderboard, leaderboard_markdown, protocol_of, protocol_label, budget_of
from robustclip.results import result_record, write_result, load_results

RUNS = Path(__file__).resolve().parents[1] / "runs" / "mini" / "results"  # after `make reproduce`


def _attack(eps: str, iterations: int = 20, n: int = 200) -> dict:
    return {
        "name": "apgd-ce,apgd-t",
        "attacks": ["apgd-ce", "apgd-t"],
        "norm": "linf",
        "eps": eps,
        "iterations": iterations,
        "restarts": {"apgd-ce": 1, "apgd-t": 1},
        "targets": 3,
        "seed": 0,
        "n_samples": n,
    }


def _write(d: Path, model: str, ds: str, robust: float, *, eps: str = "10/255", iterations: int = 20, run=None) -> Path:
    rec = result_record(
        dataset=ds,
        model={"model": model, "pretrained": ""},
        task="zeroshot",
        metrics={"acc1": 0.95, "robust_acc1": robust, "n": 200},
        attack=_attack(eps, iterations),
        n_samples=200,
        seed=0,
        subset="random",
        **({"run": run} if run else {}),
    )
    p = d / f"{model}-{ds.replace('/', '_')}-{eps[:2].strip('/')}-{iterations}.json"
    write_result(rec, p)
    return p


@pytest.fixture
def pile(tmp_path):
    "Three models on two datasets under one protocol (10/255, 20 iterations), and one at 20/255."
    for m, vals in (("fare", (0.5, 0.3)), ("tecoa", (0.6, 0.1)), ("clip", (0.0, 0.0))):
        for ds, v in zip(("mini/color", "mini/size"), vals):
            _write(tmp_path, m, ds, v)
    _write(tmp_path, "fare", "mini/color", 0.2, eps="20/255")
    return tmp_path


def test_one_protocol_ranks_by_the_mean_without_warnings(pile):
    lb = leaderboard(load_results(pile))
    assert lb.budget == "10/255" and [r["model"] for r in lb.rows] == ["fare", "tecoa", "clip"]
    assert lb.rows[0]["score"] == pytest.approx(0.4) and lb.rows[1]["values"]["mini/size"] == pytest.approx(0.1)
    assert lb.warnings == [] and any("also hold: 20/255" in n for n in lb.notes)
    md = leaderboard_markdown(lb)
    assert "| 1 | fare | 40.0 | 95.0 | 50.0 | 30.0 | apgd-ce,apgd-t linf 10/255, 20 it, 1 restarts, 3 targets" in md


def test_mixed_protocols_warn_and_show_each_rows_protocol(pile):
    _write(pile, "simclip", "mini/color", 0.9, iterations=100)
    _write(pile, "simclip", "mini/size", 0.9, iterations=100)
    lb = leaderboard(load_results(pile))
    assert lb.rows[0]["model"] == "simclip" and "100 it" in protocol_label(lb.rows[0]["protocol"])
    (w,) = [w for w in lb.warnings if "different protocols" in w]
    assert "row 1: apgd-ce,apgd-t linf 10/255, 100 it" in w and "rows 2, 3, 4: apgd-ce,apgd-t linf 10/255, 20 it" in w
    md = leaderboard_markdown(lb)
    assert "**warning**: rows were measured under 2 different protocols" in md


def test_budget_and_dataset_choose_the_rows(pile):
    lb = leaderboard(load_results(pile), budget="20/255")
    assert [r["model"] for r in lb.rows] == ["fare"] and lb.rows[0]["values"] == {"mini/color": 0.2}
    lb = leaderboard(load_results(pile), datasets=["mini/size"])
    assert [r["model"] for r in lb.rows] == ["fare", "tecoa", "clip"] and lb.datasets == ["mini/size"]
    with pytest.raises(RobustClipError, match="no record at budget 4/255"):
        leaderboard(load_results(pile), budget="4/255")


def test_clip_benchmark_and_robustvlm_records_join(tmp_path):
    rvlm = {  # RobustVLM's CLIP_benchmark output (Sim-CLIP's repository, CLIP_benchmark/out/adv_clip_benchmark/)
        "dataset": "wds/vtab/CIFAR100",
        "model": "ViT-L-14",
        "pretrained": "fare_eps_4.pt",
        "beta": None,
        "task": "zeroshot_classification",
        "metrics": {"acc1": 0.331, "acc5": 0.744, "mean_per_class_recall": 0.33},
        "language": "en",
        "attack": "aa",
        "iterations_adv": 100,
        "eps": 2.0,
        "norm": "Linf",
    }
    (tmp_path / "adv.json").write_text(json.dumps(rvlm))
    (tmp_path / "openai.json").write_text(json.dumps({**rvlm, "pretrained": "openai", "metrics": {"acc1": 0.0}}))
    clean = {
        "dataset": "cifar100",
        "model": "ViT-B-32",
        "pretrained": "openai",
        "task": "zeroshot_classification",
        "metrics": {"acc1": 0.65, "acc5": 0.88, "mean_per_class_recall": 0.65},
        "language": "en",
    }
    (tmp_path / "clean.json").write_text(json.dumps(clean))
    recs = load_results(tmp_path)
    lb = leaderboard(recs)
    assert budget_of(rvlm) == "2/255" and lb.budget == "2/255"
    assert [r["model"] for r in lb.rows] == ["ViT-L-14 (fare_eps_4.pt)", "ViT-L-14 (openai)"]
    assert "RobustVLM clip_benchmark" in protocol_label(lb.rows[0]["protocol"])
    lb = leaderboard(recs, metric="acc1")
    assert lb.rows[0]["model"] == "ViT-B-32 (openai)" and protocol_of(clean)["samples"] == "all"
    assert "clip_benchmark" in protocol_label(lb.rows[0]["protocol"])


def test_leaderboard_command(pile, capsys, tmp_path):
    _write(pile, "simclip", "mini/color", 0.9, iterations=100)
    out = tmp_path / "lb" / "board.md"
    assert main(["leaderboard", str(pile), "--output", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("Leaderboard: zeroshot_classification, ranked by robust_acc1 (%) at 10/255")
    assert "robustclip: warning: rows were measured under 2 different protocols" in cap.err
    assert out.read_text() == cap.out
    assert main(["leaderboard", str(pile), "--budget", "20/255", "--dataset", "mini/color"]) == 0
    assert "| 1 | fare | 20.0 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["nope-dir"], "does not exist"),
        (["EMPTY"], "no result JSON under"),
        (["PILE", "--budget", "4/255"], "no record at budget 4/255"),
        (["PILE", "--metric", "cider"], "no zeroshot_classification record has metrics.cider"),
        (["PILE", "--task", "text"], "no zeroshot_text_classification records"),
        (["PILE", "--budget", "4"], "eps"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, msg, pile, tmp_path, capsys):
    (tmp_path / "EMPTY").mkdir()
    argv = [str(pile) if a == "PILE" else str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in argv]
    assert main(["leaderboard", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and err[0].startswith("robustclip leaderboard: error:")


@pytest.mark.skipif(not (RUNS / "zeroshot").is_dir(), reason="runs/mini/results: run `make reproduce` first")
def test_the_mini_plans_results_rank_its_models(capsys):
    "The mini plan's Table 4 models, one protocol: no warning; drift ranks lowest first."
    assert main(["leaderboard", str(RUNS / "zeroshot")]) == 0
    out = capsys.readouterr()
    for m in ("base", "tecoa2", "fare2", "simclip2", "tecoa4", "fare4", "simclip4"):
        assert f"| {m} |" in out.out
    assert "different protocols" not in out.err
    lb = leaderboard(load_results(RUNS / "drift"), task="drift")
    assert lb.rows[0]["score"] <= lb.rows[-1]["score"]
