"""Deep Feature Factorization and its NMF: a naive assembly of the activation matrix, exact
recovery of known concepts, head naming, the overlay, the CLI, scikit-learn and pytorch-grad-cam."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import DeepFeatureFactorization
from camlens.errors import ArgumentError, InputShapeError, LayerNotFoundError
from camlens.image import show_factorization_on_image
from camlens.nmf import nmf
from camlens.targets import ClassifierOutputTarget

from .reference import finish


class BlobNet(nn.Module):
    """(N, 2, 8, 8) -> ``feat``: 1x1 conv, non-negative weights, no bias (2 -> 6) -> ReLU -> mean -> ``fc`` (6 -> 3).

    With non-negative inputs the activations are exactly ``V = X W^T``: an NMF of rank 2 whose
    factors are the two input channels (where) and the conv's weight columns (what). Channels 0-1
    see only input 0 and 4-5 only input 1, so both factors have pure rows and the NMF is unique."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.feat = nn.Conv2d(2, 6, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 3)
        with torch.no_grad():
            self.feat.weight.copy_(torch.rand(6, 2, 1, 1, generator=g) + 0.2)
            self.feat.weight[0:2, 1] = 0.0
            self.feat.weight[4:6, 0] = 0.0
            self.fc.weight.copy_(torch.randn(3, 6, generator=g))
            self.fc.bias.copy_(torch.randn(3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.feat(x)).mean(dim=(2, 3)))


def blobs(n: int = 3, noise: float = 0.0) -> torch.Tensor:
    """Channel 0: a square in the top-left, channel 1: a bar at the bottom, intensities per image."""
    g = torch.Generator().manual_seed(5)
    x = torch.zeros(n, 2, 8, 8)
    for i in range(n):
        x[i, 0, 1:4, 1 + i % 2 : 4 + i % 2] = 1.0 + 0.5 * i
        x[i, 1, 5:7, 2 : 7 - i % 2] = 2.0 - 0.3 * i
    return x + noise * torch.rand(x.shape, generator=g)


def _matching(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, ...], list[float]]:
    """The permutation of b's components (axis 1) that best correlates with a's, and the correlations."""
    k = a.shape[1]
    corr = np.array([[np.corrcoef(a[:, i].ravel(), b[:, j].ravel())[0, 1] for j in range(k)] for i in range(k)])
    best = max(itertools.permutations(range(k)), key=lambda p: sum(corr[i, p[i]] for i in range(k)))
    return best, [float(corr[i, best[i]]) for i in range(k)]


# --------------------------------------------------------------------------------- NMF
def test_nmf_recovers_an_exact_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(40, 3, generator=g) @ torch.rand(3, 25, generator=g)
    res = nmf(v, 3, max_iter=2000, tol=1e-9)
    assert res.W.shape == (40, 3) and res.H.shape == (3, 25)
    assert (res.W >= 0).all() and (res.H >= 0).all()
    assert res.error == pytest.approx(float(torch.linalg.norm(v - res.W @ res.H)), rel=1e-5)
    assert res.error / float(torch.linalg.norm(v)) < 1e-3


def test_nmf_is_deterministic_and_seeded():
    v = torch.rand(30, 12, generator=torch.Generator().manual_seed(1))
    a, b = nmf(v, 3), nmf(v, 3)
    assert torch.equal(a.W, b.W) and torch.equal(a.H, b.H)
    r1, r2, r3 = nmf(v, 3, init="random", seed=1), nmf(v, 3, init="random", seed=1), nmf(v, 3, init="random", seed=2)
    assert torch.equal(r1.W, r2.W)
    assert not torch.equal(r1.W, r3.W)


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd", "random"])
def test_nmf_reaches_scikit_learns_reconstruction_error(init):
    decomposition = pytest.importorskip("sklearn.decomposition")
    g = torch.Generator().manual_seed(0)
    # Like post-ReLU activations: a non-negative low-rank signal plus noise, sparse.
    v = torch.rand(160, 4, generator=g) @ torch.rand(4, 48, generator=g) + 0.1 * torch.rand(160, 48, generator=g)
    v[v < 0.3] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        sk = decomposition.NMF(n_components=4, init=init, random_state=0, max_iter=1000, tol=1e-6)
        sk.fit(v.double().numpy())
    ours = nmf(v, 4, init=init, max_iter=1000, tol=1e-6)
    assert abs(ours.error - sk.reconstruction_err_) <= 0.01 * sk.reconstruction_err_, (ours.error, sk.reconstruction_err_)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.ones(3),), {}, InputShapeError, r"2-D \(m, n\) tensor"),
        ((-torch.ones(3, 3),), {}, ArgumentError, r"non-negative matrix; clamp it"),
        ((torch.ones(3, 3),), {"init": "svd"}, ArgumentError, r"init must be one of \['nndsvda', 'nndsvd', 'random'\]; got 'svd'"),
        ((torch.ones(3, 3),), {"max_iter": 0}, ArgumentError, r"max_iter must be a positive int; got 0"),
    ],
)
def test_nmf_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        nmf(*args, 2, **kwargs)


# --------------------------------------------------------------------------------- DFF
def test_factorize_by_hand():
    """V assembled by loops (row = image, y, x; column = channel), factorised by the same NMF:
    factorize() must reshape W and H back exactly so, and the CAM is the dominant strength."""
    model = BlobNet().eval()
    x = blobs(noise=0.05)
    w = model.feat.weight.detach()[:, :, 0, 0].numpy()
    xs = x.numpy()
    n, _, h, wd = xs.shape
    rows = []
    for i in range(n):
        for y in range(h):
            for q in range(wd):
                rows.append([max(0.0, float(sum(w[c, j] * xs[i, j, y, q] for j in range(2)))) for c in range(6)])
    ref = nmf(torch.tensor(rows, dtype=torch.float32), 2)
    peak = ref.W.amax(dim=0)
    norms = ref.H.norm(dim=1)  # strength = ||W_ij H_j|| = W_ij ||H_j||
    expected_maps = (ref.W * norms).numpy().reshape(n, h, wd, 2).transpose(0, 3, 1, 2)

    dff = DeepFeatureFactorization(model, "feat", n_components=2, head="fc")
    fac = dff.factorize(x)
    np.testing.assert_allclose(fac.layer_maps.numpy(), expected_maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fac.concepts.numpy(), (ref.H * peak[:, None]).numpy(), rtol=1e-4, atol=1e-5)
    assert fac.reconstruction_error == pytest.approx(ref.error, abs=1e-4)  # V is exactly rank 2
    # layer resolution == input resolution here: maps are the strengths over each image's peak
    scale = expected_maps.reshape(n, -1).max(axis=1)[:, None, None, None]
    np.testing.assert_allclose(fac.maps.numpy(), expected_maps / scale, rtol=1e-4, atol=1e-5)
    # the head names each concept: softmax(fc(concept))
    fw, fb = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    for j in range(2):
        logits = [sum(fw[c, m] * float(fac.concepts[j, m]) for m in range(6)) + fb[c] for c in range(3)]
        e = np.exp(np.array(logits) - max(logits))
        np.testing.assert_allclose(fac.concept_scores[j].numpy(), e / e.sum(), rtol=1e-5)
        assert fac.top_classes[j].tolist() == list(np.argsort(-e)[:3])

    exp = dff.explain(x, [ClassifierOutputTarget(0)] * n)
    dominant = expected_maps.max(axis=1)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), dominant, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(dominant), atol=1e-4)


def test_recovers_the_known_concepts():
    model = BlobNet().eval()
    x = blobs()
    fac = DeepFeatureFactorization(model, "feat", n_components=2).factorize(x)
    perm, corr = _matching(x.numpy(), fac.layer_maps.numpy())
    assert min(corr) > 0.999
    weights = model.feat.weight.detach()[:, :, 0, 0]
    for j in range(2):
        cos = torch.nn.functional.cosine_similarity(fac.concepts[perm[j]], weights[:, j], dim=0)
        assert float(cos) > 0.999
    assert fac.relative_error < 1e-3


def test_maps_upsampled_to_the_input_and_labels(small_cnn, image_batch):
    fac = DeepFeatureFactorization(small_cnn, "block", n_components=3, head="auto").factorize(image_batch)
    assert fac.maps.shape == (4, 3, 16, 16) and fac.layer_maps.shape == (4, 3, 8, 8)
    assert float(fac.maps.min()) >= 0 and fac.maps.flatten(1).amax(dim=1).tolist() == pytest.approx([1.0] * 4)
    assert fac.concepts.shape == (3, 16)
    assert fac.top_classes.shape == (3, 3)
    names = [f"class{i}" for i in range(6)]
    labels = fac.labels(names, top_k=2)
    assert len(labels) == 3 and all(len(t.split(", ")) == 2 and t.startswith("class") for t in labels)
    assert DeepFeatureFactorization(small_cnn, "block", n_components=2).factorize(image_batch).labels() == [
        "concept 1",
        "concept 2",
    ]


def test_dff_errors(small_cnn, image_batch):
    with pytest.raises(ArgumentError, match=r"n_components must be a positive int; got 0"):
        DeepFeatureFactorization(small_cnn, "block", n_components=0)
    with pytest.raises(LayerNotFoundError, match=r"head 'fcc' is not a submodule of SmallCNN"):
        DeepFeatureFactorization(small_cnn, "block", head="fcc")
    with pytest.raises(ArgumentError, match=r"factorize\(\) works on one target layer; got 2"):
        DeepFeatureFactorization(small_cnn, ["stem", "block"]).factorize(image_batch)
    with pytest.raises(ArgumentError, match=r"expected \(2, classes\)"):
        DeepFeatureFactorization(small_cnn, "block", n_components=2, head=lambda f: f.sum()).factorize(image_batch)
    with pytest.warns(UserWarning, match=r"no nn.Linear taking 8 features"):
        fac = DeepFeatureFactorization(small_cnn, "stem", n_components=2, head="auto").factorize(image_batch)
    assert fac.concept_scores is None


@pytest.mark.parametrize("case", ["blobs", "small_cnn"])
def test_pytorch_grad_cam_agrees_after_matching_components(case, small_cnn, image_batch):
    """Same concept maps as pytorch-grad-cam 1.5.7 once components are matched. It normalises each
    (image, concept) map on its own, camlens one scale per image: maps are compared per image."""
    pytest.importorskip("sklearn")
    peer = pytest.importorskip("pytorch_grad_cam")
    if case == "blobs":
        model, layer, x, k = BlobNet().eval(), "feat", blobs(n=4, noise=0.05), 2
    else:
        model, layer, x, k = small_cnn, "stem", image_batch, 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning
        _, theirs = peer.DeepFeatureFactorization(model=model, target_layer=model.get_submodule(layer))(x, n_components=k)
    theirs = np.stack(theirs)
    ours = DeepFeatureFactorization(model, layer, n_components=k).factorize(x).maps.numpy()
    perm, _ = _matching(theirs, ours)
    corr = [np.corrcoef(theirs[i, j].ravel(), ours[i, perm[j]].ravel())[0, 1] for i in range(len(x)) for j in range(k)]
    assert min(corr) >= 0.95, corr


# --------------------------------------------------------------------------------- overlay
def test_overlay_colours_each_pixel_by_its_dominant_concept():
    img = np.full((4, 6, 3), 0.5, dtype=np.float32)
    maps = np.zeros((2, 4, 6), dtype=np.float32)
    maps[0, :, :3] = 1.0  # concept 0 on the left at full strength
    maps[1, :, 3:] = 0.5  # concept 1 on the right at half strength
    out = show_factorization_on_image(img, maps, colors=["red", "blue"], image_weight=0.5, legend=False)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], np.uint8(np.rint(255 * np.array([0.75, 0.25, 0.25]))))
    np.testing.assert_array_equal(out[0, 5], np.uint8(np.rint(255 * np.array([0.25, 0.25, 0.5]))))
    with_legend = show_factorization_on_image(img, maps, labels=["cat 0.9", "dog 0.1"])
    assert with_legend.dtype == np.uint8 and with_legend.shape[1] > 6 and with_legend.shape[2] == 3


def test_overlay_errors():
    img = np.zeros((4, 6, 3), dtype=np.float32)
    with pytest.raises(InputShapeError, match=r"maps must be \(k, H, W\)"):
        show_factorization_on_image(img, np.zeros((2, 5, 6)))
    with pytest.raises(ArgumentError, match=r"got 1 labels for 2 concepts"):
        show_factorization_on_image(img, np.zeros((2, 4, 6)), labels=["a"])


def test_cli_writes_the_concept_figure(tmp_path, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    from camlens.app.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    rc = main(["explain", str(path), "--model", "resnet18", "--weights", "none", "--target-layer", "layer4",
               "--method", "dff", "--components", "3", "-o", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "dff: 3 concepts ->" in capsys.readouterr().out
    with Image.open(out / "img_dff_concepts.png") as im:
        assert im.mode == "RGB" and im.size[0] > im.size[1]  # overlay + legend panel
    assert np.load(out / "img_dff_cam.npy").shape == (224, 224)


def test_nmf_settings_are_checked_when_dff_is_built(small_cnn):
    with pytest.raises(ArgumentError, match=r"tol must be a number >= 0; got -1"):
        DeepFeatureFactorization(small_cnn, "block", tol=-1)
    with pytest.raises(ArgumentError, match=r"init must be one of"):
        DeepFeatureFactorization(small_cnn, "block", init="svd")
