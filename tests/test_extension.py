"""Extending robustclip: a new attack, LVLM backend, dataset or evaluation is one new file plus one registration.

Each test writes its toy into an empty folder as the only file, and makes it known the way CONTRIBUTING.md says: an
attack, an LVLM backend and a dataset register themselves when their module is imported, and the module is named in
`ROBUSTCLIP_PLUGINS` (or, in a package, by one `robustclip.plugins` entry point); an evaluation is an `Adapter` and a
function on `run_eval`, and the CLI learns it from one `Command(...)` line in `robustclip.app.cli.COMMANDS`. Nothing in
the repository is edited: the tests run the unchanged `robustclip` command (or library) against the toy.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def plugin(tmp_path: Path, name: str, source: str) -> dict:
    "Write the toy module `name` as the only file of `tmp_path`; the environment that loads it as a plugin."
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.py"]  # one new file
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "ROBUSTCLIP_PLUGINS": name, "ROBUSTCLIP_PROGRESS": "0"}


def robustclip(env: dict, *args: str) -> subprocess.CompletedProcess:
    "Run the installed command, unchanged, with `env`."
    cmd = [sys.executable, "-m", "robustclip", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)


TOY_ATTACK = '''
    "FGSM as an image attack: one step of size eps along the normalised gradient of the cross-entropy."
    import torch

    from robustclip.attacks.apgd import APGDResult
    from robustclip.attacks.base import eval_mode, input_grad, lp_normalize, project
    from robustclip.attacks.losses import get_objective
    from robustclip.attacks.registry import register_attack


    class FGSM:
        "One step of size eps along the sign (ℓ∞) or direction (ℓ2) of the input gradient (Goodfellow et al. 2015)."

        def __init__(self, model, *, threat, steps: int = 1, precision: str = "fp32"):
            self.model, self.threat, self.steps, self.precision = model, threat, steps, precision
            self.objective = get_objective("ce")

        def run(self, x, y, generator=None):
            eps, norm = self.threat.eps, self.threat.norm
            with eval_mode(self.model):
                _, _, g = input_grad(self.model, x, self.objective.bind(y), self.precision)
                x_adv = x + project(eps * lp_normalize(g, norm), x, eps, norm)
                with torch.no_grad():
                    fooled = self.model(x_adv).argmax(1) != y
            return APGDResult(x_adv, torch.zeros(len(x), device=x.device), fooled)


    register_attack("fgsm", FGSM)
'''


def test_a_new_attack_is_one_file_and_one_registration(tmp_path):
    env = plugin(tmp_path, "toy_attack", TOY_ATTACK)
    out = tmp_path.parent / f"{tmp_path.name}-fgsm.json"
    args = ["eval", "zeroshot", "--model", "mini-base", "--dataset", "mini/digit", "--attack", "fgsm,apgd-ce"]
    r = robustclip(env, *args, "--eps", "8/255", "--n-samples", "16", "--iterations", "2", "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["attack"]["attacks"] == ["fgsm", "apgd-ce"] and rec["attack"]["restarts"] == {"fgsm": None, "apgd-ce": 5}
    m = rec["metrics"]
    assert m["per_attack"]["apgd-ce"] <= m["per_attack"]["fgsm"] <= m["acc1"]  # the worst case over both
    bad = robustclip(env, *args[:-1], "fgsm", "--eps", "8/255", "--restarts", "2", "--n-samples", "4")
    assert bad.returncode == 2 and "the image attack 'fgsm' takes no option 'restarts'" in bad.stderr  # never ignored
    unknown = robustclip({**env, "ROBUSTCLIP_PLUGINS": ""}, *args[:-1], "fgsm", "--eps", "8/255")
    assert unknown.returncode == 2 and "unknown attack 'fgsm'" in unknown.stderr  # without the registration: unknown


TOY_LVLM = '''
    "A toy LVLM backend: 4x4 average-pooled pixels as 16 image tokens, read by a 2-layer random Llama."
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from robustclip.vlm.core import LVLM, register_lvlm, word_tokenizer


    class ToyLVLM(LVLM):
        "Image tokens: each 4x4 block's mean colour, projected into the language model's embedding space."

        def __init__(self, lm, tokenizer):
            super().__init__(lm, tokenizer, name="toy-lvlm", max_new_tokens=4)
            self.proj = nn.Linear(3, lm.config.hidden_size)

        @property
        def image_size(self) -> int:
            return 16

        def image_tokens(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(2).transpose(1, 2))


    @register_lvlm("toy-lvlm")
    def load_toy(spec, *, device="cpu", precision="fp32"):
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        tok = word_tokenizer(["a red digit on a blue field yes no what colour"])
        size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **ids, **size))
        return ToyLVLM(lm, tok).to(device)
'''


def test_a_new_lvlm_backend_is_one_file_and_one_registration(tmp_path):
    pytest.importorskip("transformers")
    env = plugin(tmp_path, "toy_lvlm", TOY_LVLM)
    out = tmp_path.parent / f"{tmp_path.name}-lvlm.json"
    args = ["eval", "vlm", "--vlm", "toy-lvlm", "--dataset", "mini/captions", "--n-samples", "4", "--batch-size", "2"]
    r = robustclip(env, *args, "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["model"] == "toy-lvlm" and rec["metrics"]["n"] == 4 and "cider" in rec["metrics"]


TOY_DATASET = '''
    "A toy task: stripes or dots, in red or blue, drawn on the fly."
    import torch

    from robustclip.data.core import ClassificationTask, register_dataset


    def draw(i: int) -> torch.Tensor:
        "Image `i` (3x32x32 in [0,1]): vertical stripes when i is even, dots when it is odd; red or blue by i // 2."
        x = torch.zeros(3, 32, 32)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        if i % 2 == 0:
            mask[:, ::4] = True
        else:
            mask[::4, ::4] = True
        x[0 if (i // 2) % 2 == 0 else 2][mask] = 1.0
        return x


    @register_dataset("toy/patterns")
    def patterns(name, root=None, split="test", n: int = 12, **kw):
        data = [(draw(i), i % 2) for i in range(n)]
        return ClassificationTask(name, data, ["stripes", "dots"], ["a photo of {c}."], native_resolution=True)
'''


def test_a_new_dataset_is_one_file_and_one_registration(tmp_path):
    env = plugin(tmp_path, "toy_data", TOY_DATASET)
    out = tmp_path.parent / f"{tmp_path.name}-data.json"
    r = robustclip(env, "eval", "zeroshot", "--model", "mini-base", "--dataset", "toy/patterns", "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert (rec["dataset"], rec["metrics"]["n"]) == ("toy/patterns", 12) and 0 <= rec["metrics"]["acc1"] <= 1


TOY_EVALUATION = '''
    "A toy evaluation: the mean norm of a model's unnormalised image embeddings, batch by batch on the runner."
    import argparse
    import math

    import torch

    from robustclip.data.core import ClassificationTask
    from robustclip.eval.runner import Adapter, EvalRun, eval_options, resolve_model, resolve_task, run_eval
    from robustclip.zeroshot import ImageEmbedder, task_inputs


    class EmbeddingNorm(Adapter):
        "Per batch, the norm of each image embedding; the record's metric is their mean."

        task = "embedding_norm"

        def __init__(self, model, task, run):
            super().__init__(model, task.name, split=run.split, seed=run.seed)
            self.data_task, self.idx, self.batch_size = task, run.subset_spec.indices(len(task)), run.batch_size

        def prepare(self):
            self.enc = ImageEmbedder(self.model)
            self.data = task_inputs(self.data_task, self.model, self.idx)

        def n_batches(self):
            return math.ceil(len(self.idx) / self.batch_size)

        def run_batch(self, b):
            xs = [self.data[i][0] for i in range(b * self.batch_size, min(len(self.idx), (b + 1) * self.batch_size))]
            with torch.no_grad():
                return {"norms": self.enc(torch.stack(xs).to(self.model.device)).norm(dim=-1).tolist()}

        def finish(self, lines):
            norms = [v for b in sorted(lines) for v in lines[b]["norms"]]
            return {"mean_norm": sum(norms) / len(norms), "n": len(norms)}, None, {}


    def eval_norm(model, dataset, **options):
        "The mean embedding norm of `model` on `dataset` (options: `EvalRun`'s)."
        (run,) = eval_options(options, "eval_norm", EvalRun(batch_size=8))
        task = resolve_task(dataset, ClassificationTask, "an image task", data_root=run.data_root, split=run.split)
        return run_eval(EmbeddingNorm(resolve_model(model, run.pretrained, run.device), task, run), **run.files)


    def add_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True)
        p.add_argument("--dataset", required=True)
        p.add_argument("--n-samples", type=int, default=None)
        p.add_argument("--output", default=None)


    def run(args: argparse.Namespace) -> int:
        rec = eval_norm(args.model, args.dataset, n_samples=args.n_samples, output=args.output, device="cpu")
        print(f"{rec['dataset']}  mean norm {rec['metrics']['mean_norm']:.4f}")
        return 0
'''


def test_a_new_evaluation_is_one_file_and_one_command_line(tmp_path, monkeypatch):
    plugin(tmp_path, "toy_eval", TOY_EVALUATION)  # (an evaluation needs no plugin registration: it is imported)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_eval
    from robustclip.app.cli import COMMANDS, Command, main

    out = tmp_path.parent / f"{tmp_path.name}-norm.json"
    rec = toy_eval.eval_norm("mini-base", "mini/digit", n_samples=12, output=out, device="cpu")
    assert (rec["task"], rec["metrics"]["n"], rec["samples"]) == ("embedding_norm", 12, out.stem + ".samples.jsonl")
    again = toy_eval.eval_norm("mini-base", "mini/digit", n_samples=12, output=out, device="cpu")
    assert again["resumed_batches"] == 2 and again["metrics"] == rec["metrics"]  # the runner's sidecar, for free
    with pytest.raises(ValueError, match="eval_norm takes no option 'n_sample'"):
        toy_eval.eval_norm("mini-base", "mini/digit", n_sample=12)
    monkeypatch.setitem(COMMANDS, "eval norm", Command("toy_eval", "mean image-embedding norm"))  # the one line
    assert main(["eval", "norm", "--model", "mini-base", "--dataset", "mini/digit", "--n-samples", "12"]) == 0
