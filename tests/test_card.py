"""`robustclip card`: the mini-base card end to end. Every number printed in card.md is checked against the result
file it links to (read here with `json`, independently of the card's code); the SHA-256 of every file, the protocol,
the version and the exact commands are in the card (one command is rerun and must give the same record); a rerun
skips every finished step; a card killed with SIGKILL mid-evaluation continues where it stopped and ends with the
same numbers. Bad input exits 2 with one line and creates nothing.

One card of mini-base takes about 1.5 minutes on an idle core (more on a busy machine); the kill -9 test is marked slow.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustclip.app.cli import main
from robustclip.zoo import ZOO

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "mini" / "results"  # after `make reproduce`
LINK = re.compile(r"^\[([^\]]+)\]\(([^)]+\.json)\)$")
COMPARE = ["fare2-vitl", "clip-vitl14"]
pytestmark = pytest.mark.xdist_group("card")  # one worker runs the module: the card fixture is made once


def _env(**kw) -> dict:
    return {**os.environ, "ROBUSTCLIP_PROGRESS": "0", "OMP_NUM_THREADS": "1", **kw}


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    "The mini-base card, made once by the command as users run it (in this process)."
    d = tmp_path_factory.mktemp("card") / "mini-base"
    t0 = time.time()
    assert (
        main(["card", "--model", "mini-base", "--output", str(d), "--compare", ",".join(f"zoo:{c}" for c in COMPARE)])
        == 0
    )
    print(f"card of mini-base: {time.time() - t0:.0f} s")
    return d


def _sections(md: str) -> dict[str, list[list[str]]]:
    "Each '## ' section's Markdown table rows (cells stripped), header first."
    out, name = {}, None
    for line in md.splitlines():
        if line.startswith("## "):
            name = line[3:]
            out[name] = []
        elif name and line.startswith("|") and not line.startswith("|---"):
            out[name].append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


def _close(printed: str, value: float) -> bool:
    "Whether `printed` is `value` as printed (to the digits shown)."
    shown = float(printed)
    if "e" in printed.lower() or ("." in printed and abs(value) < 1 and printed != f"{value:.1f}"):
        return abs(shown - value) <= 0.006 * abs(value) + 1e-12
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(shown - value) <= 0.5 * 10**-decimals + 1e-9


_CLEAN = {"zeroshot": "acc1", "text": "acc1", "drift": "drift_clean"}
_ROBUST = {"zeroshot": "robust_acc1", "text": "robust_acc1", "drift": "drift_adv"}
_SCALE = {"acc1": 100, "robust_acc1": 100, "drift_clean": 1, "drift_adv": 1}


def _expect(rec: dict, kind: str, header: str) -> float:
    "The number a column of a `kind` table must show from `rec`, checking the record is of that column's budget."
    a = rec.get("attack") or {}
    if header == "clean":
        assert kind != "zeroshot" or not a, "a clean image cell must link a clean record"
        m = _CLEAN[kind]
    elif header.startswith("ε=") or header.startswith("adv "):
        assert a.get("eps") == header.split("=")[-1].split()[-1], (header, a.get("eps"))
        m = _ROBUST[kind]
    else:
        assert header == f"k={a.get('k')}", (header, a.get("k"))
        m = _ROBUST[kind]
    return _SCALE[m] * rec["metrics"][m]


_KINDS = {"Image: zero-shot": "zeroshot", "Text: zero-shot": "text", "Embedding drift": "drift"}


def test_every_number_in_the_card_is_its_result_files(card):
    md = (card / "card.md").read_text()
    checked, means = 0, 0
    for title, rows in _sections(md).items():
        kind = next((k for t, k in _KINDS.items() if title.startswith(t)), None)
        if kind is None:
            continue
        head, first = rows[0], 2 if kind == "zeroshot" else 1
        transfer: dict[int, list[float]] = {}
        for row in rows[1:]:
            if row[0] == "transfer mean":
                for j, cell in enumerate(row[first:], first):
                    vals = transfer[j]
                    assert _close(cell, sum(vals) / len(vals)), (cell, vals)
                    means += 1
                continue
            for j, cell in enumerate(row[first:], first):
                m = LINK.match(cell)
                assert m, f"{title}: {row[0]} {head[j]} is not a link to a result file: {cell!r}"
                rec = json.loads((card / m.group(2)).read_text())
                assert rec["dataset"] == row[0]
                v = _expect(rec, kind, head[j])
                assert _close(m.group(1), v), (row[0], head[j], m.group(1), v)
                if kind == "zeroshot" and row[1] == "transfer":
                    transfer.setdefault(j, []).append(v)
                checked += 1
    assert checked == 16 + 6 + 2 and means == 4


def test_reported_numbers_are_the_zoos_and_marked(card):
    rows = _sections((card / "card.md").read_text())["Reported beside measured"]
    assert rows[0][2:] == [f"zoo:{c}" for c in COMPARE]
    shown = 0
    for row in rows[1:]:
        for name, cell in zip(COMPARE, row[2:]):
            want = [r for r in ZOO[name].reported if r.metric == row[0]]
            got = re.findall(r"([\d.]+) \*reported\*, ([^;†\[]+)", cell)
            assert [(float(v), s.strip()) for v, s in got] == [(r.value, r.source) for r in want], (row[0], cell)
            shown += len(got)
            assert ("†" in cell) == any(not r.verified for r in want)
        m = LINK.match(row[1])
        if m:  # a measured card metric: the same file and value as in its part's table
            assert m.group(0) in (card / "card.md").read_text().split("## Reported")[0]
    assert shown == sum(len(ZOO[c].reported) for c in COMPARE)


def test_card_names_protocol_version_commands_and_hashes(card):
    from robustclip import __version__
    from robustclip.eval.card import protocol_name, protocol_digest

    md, man = (card / "card.md").read_text(), json.loads((card / "card.json").read_text())
    assert protocol_name() in md and protocol_digest() in md and f"robustclip {__version__}" in md
    assert man["protocol"] == {"name": protocol_name(), "digest": protocol_digest(), "scale": "mini"}
    assert (
        man["command"].startswith("robustclip card --model mini-base --scale mini --output ") and man["command"] in md
    )
    files = {r["file"] for r in man["results"]}
    assert len(files) == 22 and (card / "card.png").stat().st_size > 5000
    for r in man["results"]:
        sha = hashlib.sha256((card / r["file"]).read_bytes()).hexdigest()
        assert r["sha256"] == sha and f"| {r['file']} | `{sha}` |" in md
        assert r["command"].startswith('python -c "from robustclip.eval.') and f"`{r['command']}`" in md


def test_a_files_command_writes_that_record_again(card, tmp_path):
    "The exact command of one result file, run on its own, gives a record of the same configuration and numbers."
    man = json.loads((card / "card.json").read_text())
    r = next(r for r in man["results"] if r["step"] == "zeroshot__mini-layout__20")
    old = json.loads((card / r["file"]).read_text())
    out = tmp_path / "again.json"
    cmd = r["command"].replace(repr(str(card / r["file"])), repr(str(out)))
    assert cmd != r["command"]
    p = subprocess.run([sys.executable, "-c", shlex.split(cmd)[2]], env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    new = json.loads(out.read_text())
    assert new["config_key"] == old["config_key"] and new["metrics"] == old["metrics"]


def test_a_rerun_skips_every_finished_step(card, capsys):
    man = json.loads((card / "card.json").read_text())
    before = {r["file"]: (card / r["file"]).stat().st_mtime_ns for r in man["results"]}
    t0 = time.time()
    assert (
        main(["card", "--model", "mini-base", "--output", str(card), "--compare", "zoo:fare2-vitl,zoo:clip-vitl14"])
        == 0
    )
    assert time.time() - t0 < 60
    assert {f: (card / f).stat().st_mtime_ns for f in before} == before
    again = json.loads((card / "card.json").read_text())
    assert again["measured"] == man["measured"]


def test_leaderboard_reads_the_cards_results(card, capsys):
    assert main(["leaderboard", str(card), "--budget", "20/255"]) == 0
    out = capsys.readouterr().out
    man = json.loads((card / "card.json").read_text())
    mean = (
        man["measured"]["source robust 20/255"]["value"] + 3 * man["measured"]["transfer robust 20/255"]["value"]
    ) / 4
    assert f"| 1 | mini-base (mini-world) | {mean:.1f} |" in out  # model (pretrained), as records name it


def test_card_from_records_reads_the_same_numbers(card, tmp_path):
    from robustclip.results import load_results
    from robustclip.eval.card import card_from_records

    man = card_from_records(load_results(card / "results"), tmp_path / "again", name="mini-base", anchor="mini-base")
    assert man["missing"] == [] and man["measured"] == json.loads((card / "card.json").read_text())["measured"]


@pytest.mark.skipif(not (RUNS / "zeroshot").is_dir(), reason="runs/mini/results: run `make reproduce` first")
def test_the_mini_plans_records_fill_a_card(tmp_path):
    "The plan's records of FARE2 (the card's mini settings) fill its card but the 5/255 steps, which the plan lacks."
    from robustclip.results import load_results, find_results
    from robustclip.eval.card import card_from_records

    recs = find_results(load_results(RUNS), run="fare2")
    man = card_from_records(recs, tmp_path / "fare2", name="fare2", anchor="mini-base", command="robustclip reproduce")
    assert set(man["missing"]) == {f"zeroshot__mini-{d}__5" for d in ("layout", "color", "size", "digit")}
    assert len(man["results"]) == 18


@pytest.mark.slow
def test_kill_9_mid_card_then_rerun_continues(card, tmp_path):
    """SIGKILL while the text evaluation has finished one of its chunks; the rerun skips what was finished, resumes it.
    Every other step is the module card's, copied in (a finished step is its stamped record, whoever ran it), so the
    killed process spends its time on the step it is killed in, not on evaluations made already."""
    d = tmp_path / "killed"
    (d / "results").mkdir(parents=True)
    copied = [f for f in (card / "results").glob("*.json") if f.name != "text__mini-text__k1.json"]
    assert len(copied) >= 17, sorted(f.name for f in copied)  # 16 image steps, the other text budgets, drift, ...
    for f in copied:
        shutil.copy2(f, d / "results" / f.name)
    cmd = [sys.executable, "-m", "robustclip", "card", "--model", "mini-base", "--output", str(d)]
    side = d / "results" / "text__mini-text__k1.samples.jsonl"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 1200:
        if side.exists() and len(side.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the card ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert not (d / "card.md").exists() and not (d / "results" / "text__mini-text__k1.json").exists()
    done = {p: p.stat().st_mtime_ns for p in (d / "results").glob("*.json")}
    assert {p.name: t for p, t in done.items()} == {
        f.name: f.stat().st_mtime_ns for f in copied
    }  # the copied steps, untouched by the killed process
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert {q: q.stat().st_mtime_ns for q in done} == done  # finished steps were not run again
    assert json.loads((d / "results" / "text__mini-text__k1.json").read_text())["resumed_batches"] == 1
    a, b = json.loads((d / "card.json").read_text()), json.loads((card / "card.json").read_text())
    assert a["measured"].keys() == b["measured"].keys()
    for k, v in a["measured"].items():
        assert v["value"] == b["measured"][k]["value"], k


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--model", "mini-base", "--scale", "huge"], "--scale must be one of mini, paper"),
        (["--model", "mini-base", "--compare", "zoo:fare9-vitl"], "no zoo entry 'fare9-vitl'"),
        (["--model", "ViT-L-41"], "unknown model 'ViT-L-41'"),
        (["--model", "zoo:fare2-vitl"], "chs20/fare2-clip is not in the Hugging Face cache"),
        (["--model", "mini-base", "--vlm", "nope-vlm"], "unknown LVLM 'nope-vlm'"),
        (["--model", "mini-base", "--scale", "paper", "--data-root", "NOWHERE"], "imagenet"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(argv, msg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    out = tmp_path / "card"
    argv = [str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in argv]
    assert main(["card", *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustclip card: error:") and msg in err[0], err
    assert not out.exists()


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["card", "--model", "mini-base", "--output", str(f)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
