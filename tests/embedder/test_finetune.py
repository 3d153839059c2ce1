"""Fine-tuning's parts on real images and the untrained tiny model: views, split, losses,
schedule, the training loop, and the text refusal of a fine-tuned index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedder.config import DecodeLimits, EmbedderConfig, ModelIdentity
from embedder.finetune.augment import Augment, view_rng
from embedder.finetune.config import FinetuneError, FinetuneSettings
from embedder.finetune.data import ViewPairs, label_ids
from embedder.finetune.losses import nt_xent, supervised_contrastive
from embedder.finetune.split import split_paths, stratified_holdout
from embedder.finetune.train import lr_factor, select_trainable, train
from index.ann.query import SearchParams
from tests.imagegen import picture, write_pictures


def _views(paths, seed, transform, order=None):
    """Each image's views, drawn in ``order`` (loading order must not matter)."""
    data = ViewPairs([str(p) for p in paths], np.arange(len(paths)), transform, Augment(),
                     seed, draft_size=128)
    data.epoch = 3
    drawn = {i: data[i] for i in (order or range(len(paths)))}
    return [drawn[i] for i in range(len(paths))]


def test_views_are_deterministic_under_a_seed(tmp_path, tiny_embedder):
    paths = write_pictures(tmp_path, 6)
    first = _views(paths, 7, tiny_embedder.transform)
    again = _views(paths, 7, tiny_embedder.transform, order=[5, 3, 1, 0, 2, 4])
    other = _views(paths, 8, tiny_embedder.transform)
    for (a0, a1, _), (b0, b1, _), (c0, _, _) in zip(first, again, other, strict=True):
        assert torch.equal(a0, b0) and torch.equal(a1, b1)
        assert not torch.equal(a0, a1)  # two different views of one image
        assert not torch.equal(a0, c0)  # another seed, other views


def test_each_augmentation_step_keeps_the_stream_aligned():
    image = picture(1, (128, 96))
    plain = Augment(flip=0.0, blur=0.0, rotate=0.0, jpeg=0.0)
    a = np.asarray(plain(image, view_rng(0, 0, 0, 0)))
    b = np.asarray(plain(image, view_rng(0, 0, 0, 0)))
    assert np.array_equal(a, b) and a.ndim == 3
    heavy = Augment(flip=1.0, blur=1.0, rotate=1.0, jpeg=1.0)
    assert heavy(image, view_rng(0, 0, 0, 0)).size == plain(image, view_rng(0, 0, 0, 0)).size


def test_the_heldout_split_never_leaks():
    rng = np.random.default_rng(0)
    labels = {f"/d/{i:04d}.jpg": f"L{rng.integers(0, 25)}" for i in range(400)}
    paths = sorted(labels) + ["/d/unlabelled.jpg"]
    for seed in range(5):
        for fraction in (0.2, 0.3, 0.5):
            train_paths, train_labels, held = split_paths(paths, labels, fraction, seed)
            assert not set(train_paths) & set(held)
            assert set(train_paths) | set(held) == set(paths)
            assert set(train_labels) == set(train_paths) - {"/d/unlabelled.jpg"}
            for label in set(held.values()):
                assert sum(v == label for v in held.values()) >= 2
                assert label in train_labels.values()
    assert stratified_holdout(labels, 0.3, 1) == stratified_holdout(labels, 0.3, 1)
    assert stratified_holdout(labels, 0.3, 1) != stratified_holdout(labels, 0.3, 2)
    assert stratified_holdout({"/a": "x", "/b": "x"}, 0.5, 0) == ({"/a": "x", "/b": "x"}, {})


def test_nt_xent_is_supervised_contrastive_with_one_image_per_label():
    z1, z2 = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)).chunk(2)
    z1, z2 = torch.cat([z1, z2]), torch.cat([z2, z1])
    unique = supervised_contrastive(z1, z2, torch.arange(8), 0.1)
    assert torch.allclose(nt_xent(z1, z2, 0.1), unique)
    assert float(nt_xent(z1, z1 + 1e-3, 0.1)) < float(nt_xent(z1, -z1, 0.1))


def test_learning_rate_warms_up_then_decays_to_zero():
    assert [round(lr_factor(s, 100, 4), 3) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, 4) == 1.0
    assert lr_factor(52, 100, 4) == pytest.approx(0.5)
    assert lr_factor(100, 100, 4) == 0.0


def _fresh_tiny():
    from embedder.embedder import Embedder
    from embedder.models import load_model

    cfg = EmbedderConfig(model="tiny", device="cpu")
    return Embedder(load_model(cfg), cfg)


def test_only_the_chosen_image_blocks_train():
    model = _fresh_tiny().model
    chosen = select_trainable(model, 1)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("visual.transformer.resblocks.1.", "visual.ln_post",
                                       "visual.proj")) for n in names)
    assert len(chosen) == len(names)
    with pytest.raises(FinetuneError, match="1..2 or all"):
        select_trainable(model, 3)
    everything = select_trainable(model, -1)
    assert len(everything) == len(list(model.visual.parameters()))


@pytest.mark.slow
def test_the_loss_decreases_on_a_small_generated_corpus(tmp_path):
    embedder = _fresh_tiny()
    paths = [str(p) for p in write_pictures(tmp_path / "img", 24)]
    data = ViewPairs(paths, label_ids(paths, {}), embedder.transform, Augment(), 0,
                     draft_size=128, limits=DecodeLimits())
    settings = FinetuneSettings(epochs=4, batch_size=12, lr=1e-3, train_layers=-1)
    result = train(embedder.model, data, settings, tmp_path / "state.pt", "base",
                   device=torch.device("cpu"), progress=False)
    assert result.epochs_done == 4 and len(result.losses) == 4
    assert result.losses[-1] < result.losses[0] - 0.1, result.losses
    with pytest.raises(FinetuneError, match="--resume"):
        train(embedder.model, data, settings, tmp_path / "state.pt", "base",
              device=torch.device("cpu"), progress=False)
    with pytest.raises(FinetuneError, match="lr differ"):
        train(embedder.model, data, FinetuneSettings(epochs=4, batch_size=12, lr=1e-4,
                                                     train_layers=-1),
              tmp_path / "state.pt", "base", device=torch.device("cpu"), resume=True,
              progress=False)


@pytest.mark.parametrize("kept", [False, True])
def test_text_queries_follow_the_recorded_alignment(tmp_path, kept):
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import TextQueriesRefusedError
    from index.store.directory import IndexDirectory
    from server.config import ServiceConfig
    from server.query import Query, validate
    from tests.synthetic import clustered, keys

    alignment = {"before": 0.31, "after": 0.12 if not kept else 0.33, "captions": 4}
    identity = ModelIdentity(name="tiny", pretrained=None, checkpoint="finetune/w.safetensors",
                             weights_sha256="f" * 64, embed_dim=16, untrained=False,
                             preprocess={}, finetune={"text_queries": kept,
                                                      "text_alignment": alignment})
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(50, 16), keys(50), identity,
                   IndexingOptions(progress=False))
    from index.ann.search import Searcher

    searcher = Searcher(directory)
    assert searcher.manifest.model.finetune == identity.finetune
    query = Query(SearchParams(k=5), text="a red car")
    if kept:
        validate(query, searcher, ServiceConfig())
    else:
        with pytest.raises(TextQueriesRefusedError, match="0.310 to 0.120"):
            validate(query, searcher, ServiceConfig())
    validate(Query(SearchParams(k=5), vector=np.ones(16, np.float32)), searcher,
             ServiceConfig())
