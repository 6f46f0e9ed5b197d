"The papers' fixed subsets: RobustBench's ImageNet-val list as shipped, and CLIP_benchmark's draw equal to wds's."

import hashlib
import json
import random
from importlib.resources import files

import pytest
import torch

from robustclip.core import RobustClipError, SubsetSpec
from robustclip.data.core import (
    ROBUSTBENCH_IMAGENET,
    clip_benchmark_draw,
    get_dataset,
    select_samples,
    subset_list,
    wds_shuffle,
    write_wds,
)


def test_robustbench_list_as_shipped():
    "5,000 distinct ids, RobustBench's first and last, LEAF's 1,000th; the file's hash as sources.json records it."
    ids = subset_list(ROBUSTBENCH_IMAGENET)
    assert (len(ids), len(set(ids))) == (5000, 5000)
    assert ids[0] == "n09468604/ILSVRC2012_val_00015253.JPEG" and ids[-1] == "n13133613/ILSVRC2012_val_00025432.JPEG"
    assert ids[999] == "n02233338/ILSVRC2012_val_00021514.JPEG"  # the last of LEAF's first 1,000
    assert len({i.split("/")[0] for i in ids}) > 900 and all(i.split("/")[1].startswith("ILSVRC2012_val_") for i in ids)
    src = files("robustclip.data").joinpath("subsets")
    meta = json.loads(src.joinpath("sources.json").read_text())[ROBUSTBENCH_IMAGENET]
    assert hashlib.sha256(src.joinpath(f"{ROBUSTBENCH_IMAGENET}.txt").read_bytes()).hexdigest() == meta["sha256"]


@pytest.mark.parametrize(
    "n,bufsize,initial", [(0, 10, 10), (7, 10, 10), (57, 10, 10), (300, 64, 20), (500, 10000, 10000)]
)
def test_shuffle_equals_webdatasets(n, bufsize, initial):
    wds = pytest.importorskip("webdataset")
    for seed in (0, 3):
        want = list(wds.filters.shuffle(bufsize, initial, rng=random.Random(seed))(iter(range(n))))
        assert list(wds_shuffle(range(n), bufsize, initial, random.Random(seed))) == want


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    "360 tiny samples in 12 shards of 30, keys s0000000... in stream order."
    d = tmp_path_factory.mktemp("wds") / "wds_vtab-pets"
    write_wds(
        d,
        torch.rand(360, 3, 2, 2, generator=torch.Generator().manual_seed(0)),
        [i % 3 for i in range(360)],
        ["a", "b", "c"],
        shard_size=30,
    )
    return d


def _fork_draw(d, n_shards: int, bufsize: int, workers: int = 4, bs: int = 50) -> list[int]:
    "RobustVLM's CLIP_benchmark pipeline on webdataset 1.0.2: shuffle(bufsize, initial=bufsize, Random(0)), 4 workers."
    wds = pytest.importorskip("webdataset")
    ds = (
        wds.WebDataset(f"{d}/test/{{0..{n_shards - 1}}}.tar", shardshuffle=False)
        .to_tuple("__key__", "cls")
        .shuffle(bufsize, initial=bufsize, rng=random.Random(0))
        .batched(bs)
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers)
    return [int(k[1:]) for keys, _ in loader for k in keys]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_draw_equals_the_forks_dataloader(shards):
    "Stream positions of our draw = the keys the fork's 4-worker DataLoader yields (exact buffer and a small one)."
    task = get_dataset("pets", root=shards.parent)
    assert task.dataset.shard_sizes == [30] * 12 and [task.dataset[i][1] for i in (0, 31, 359)] == [0, 1, 2]
    got = _fork_draw(shards, 12, 10000)
    assert clip_benchmark_draw(task.dataset.shard_sizes, n=None) == got
    assert select_samples(task, SubsetSpec(200, "clip-benchmark")) == got[:200]
    assert clip_benchmark_draw(task.dataset.shard_sizes, n=None, bufsize=16, batch_size=7) == _fork_draw(
        shards, 12, 16, bs=7
    )


def test_reference_modes_refuse_elsewhere(shards):
    task = get_dataset("pets", root=shards.parent)
    with pytest.raises(RobustClipError, match="use --dataset imagenet"):
        select_samples(task, SubsetSpec(5, "robustbench"))
    with pytest.raises(RobustClipError, match="holds 360 samples"):
        select_samples(task, SubsetSpec(400, "clip-benchmark"))
    with pytest.raises(RobustClipError, match="reference order"):
        SubsetSpec(5, "robustbench").indices(10)
