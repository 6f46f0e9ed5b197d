"""The reference side of `tests/test_flamingo.py::test_equals_open_flamingo_2_0_1`, run by the Python of a throwaway
environment that has `open-flamingo` 2.0.1 (never robustclip's own): it builds OpenFlamingo's own `Flamingo` at the
tiny size described in `<dir>/config.json`, loads `<dir>/state.pt` (robustclip's weights under the released key names)
with `strict=True`, and writes `<dir>/ref.pt`: its vision tokens, logits and beam-search outputs for `<dir>/inputs.pt`.

    python tests/flamingo_reference.py DIR

How the environment is built is in `tests/test_flamingo.py` (`REFERENCE_ENV`).
"""

import json
import sys
from pathlib import Path

import open_clip
import torch
from open_flamingo.src.flamingo import Flamingo
from open_flamingo.src.flamingo_lm import FlamingoLMMixin
from open_flamingo.src.utils import extend_instance
from transformers import MptConfig, MptForCausalLM


def build(cfg: dict) -> Flamingo:
    "OpenFlamingo's model as its factory assembles it (an open_clip CLIP, MPT with the mixin)."
    clip = open_clip.CLIP(**cfg["clip"])
    clip.visual.output_tokens = True
    lm = MptForCausalLM(MptConfig(**cfg["mpt"]))
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("transformer.blocks")
    width = cfg["clip"]["vision_cfg"]["width"]
    return Flamingo(clip, lm, cfg["eoc"], cfg["media"], vis_dim=width, cross_attn_every_n_layers=cfg["every"]).eval()


def main(out: Path) -> None:
    cfg = json.loads((out / "config.json").read_text())
    inp = torch.load(out / "inputs.pt")
    model = build(cfg)
    model.load_state_dict(torch.load(out / "state.pt"), strict=True)  # every key named as in Flamingo.state_dict()
    x = inp["vision"]
    with torch.no_grad():
        feats = model.vision_encoder(x)[1]
        logits = model(vision_x=x[:, None, None], lang_x=inp["ids"], attention_mask=inp["mask"]).logits
        gens = {}
        for lp in cfg["length_penalties"]:
            rows = []
            for i, row in enumerate(inp["prompts"]):  # one sample at a time, as RobustVLM evaluates
                ids = torch.tensor([row])
                seq = model.generate(
                    x[i : i + 1, None, None],
                    ids,
                    attention_mask=torch.ones_like(ids),
                    num_beams=3,
                    max_new_tokens=cfg["max_new_tokens"],
                    min_new_tokens=0,
                    length_penalty=lp,
                    early_stopping=False,
                    pad_token_id=cfg["pad"],
                )
                rows.append(seq[0, len(row) :].tolist())
            gens[str(lp)] = rows
    torch.save({"features": feats, "logits": logits, "generated": gens}, out / "ref.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
