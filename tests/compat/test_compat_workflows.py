"""pytorch-grad-cam workflows run through camlens.compat.grad_cam: the README example, a cam.py-style
script with every method and guided backprop writing images, ViT reshape, custom BaseCAM subclasses,
ActivationsAndGradients and the metrics with return_visualization. Against pytorch-grad-cam itself
where it is installed (skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from camlens.compat import grad_cam as gc
from camlens.compat.grad_cam.ablation_layer import AblationLayerFasterRCNN, AblationLayerVit
from camlens.compat.grad_cam.metrics.cam_mult_image import (
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
)
from camlens.compat.grad_cam.metrics.road import NoisyLinearImputer, ROADCombined, ROADMostRelevantFirst
from camlens.compat.grad_cam.utils.image import deprocess_image, preprocess_image, show_cam_on_image
from camlens.compat.grad_cam.utils.model_targets import ClassifierOutputTarget
from camlens.errors import ArgumentError

from testnets import SmallCNN, hooks_of

METHODS = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "EigenCAM",
           "EigenGradCAM", "ScoreCAM", "AblationCAM"]
AGREE = ["GradCAM", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "GradCAMPlusPlus", "EigenCAM", "EigenGradCAM"]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model, x


def test_readme_example(resnet):
    model, x = resnet
    with gc.GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(4)])
    assert grayscale.shape == (2, 64, 64) and grayscale.dtype == np.float32
    rgb = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    vis = show_cam_on_image(rgb, grayscale[0], use_rgb=True)
    assert vis.shape == (64, 64, 3) and vis.dtype == np.uint8
    # positional targets, as pytorch-grad-cam's __call__(input_tensor, targets)
    np.testing.assert_array_equal(cam(x, [ClassifierOutputTarget(3), ClassifierOutputTarget(4)]), grayscale)


def test_cam_py_script_every_method_and_guided_backprop(resnet, tmp_path):
    from PIL import Image

    model, x = resnet
    rgb = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    input_tensor = preprocess_image(rgb, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    before = hooks_of(model)
    for name in METHODS:
        cls = getattr(gc, name)
        with cls(model=model, target_layers=[model.layer4]) as cam:
            cam.batch_size = 16
            grayscale = cam(input_tensor=input_tensor, targets=None, aug_smooth=False, eigen_smooth=False)[0, :]
        cam_image = show_cam_on_image(rgb, grayscale, use_rgb=True)
        Image.fromarray(cam_image).save(tmp_path / f"{name}_cam.jpg")
        gb = gc.GuidedBackpropReLUModel(model=model, device="cpu")(input_tensor, target_category=None)
        assert gb.shape == (64, 64, 3) and gb.dtype == np.float32
        cam_mask = np.stack([grayscale] * 3, axis=-1)
        cam_gb = deprocess_image(cam_mask * gb)
        gb_img = deprocess_image(gb)
        for suffix, arr in (("gb", gb_img), ("cam_gb", cam_gb)):
            assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
            Image.fromarray(arr).save(tmp_path / f"{name}_{suffix}.jpg")
    assert hooks_of(model) == before
    assert len(list(tmp_path.glob("*.jpg"))) == 3 * len(METHODS)


@pytest.mark.parametrize("name", AGREE)
def test_agrees_with_pytorch_grad_cam(resnet, name):
    peer = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget

    model, x = resnet
    targets = [3, 7]
    # Eigen maps: one layer, since the peer's sign is arbitrary per layer
    layers = [model.layer4] if name.startswith("Eigen") else [model.layer3, model.layer4]
    cam_ours = getattr(gc, name)(model, layers)
    ours = cam_ours(x, [ClassifierOutputTarget(t) for t in targets])
    with getattr(peer, name)(model=model, target_layers=layers) as cam:
        theirs = cam(input_tensor=x, targets=[PeerTarget(t) for t in targets])
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    flipped = ours
    if name.startswith("Eigen"):  # the peer's SVD sign is arbitrary; camlens fixes it
        from camlens import postprocess as pp

        raw = cam_ours.explain(x, [ClassifierOutputTarget(t) for t in targets]).layer_maps[0]
        flipped = pp.minmax_normalize(pp.upsample(pp.relu(-raw), (64, 64))).numpy()
    for o, f, t in zip(ours, flipped, theirs):
        r = max(np.corrcoef(o.ravel(), t.ravel())[0, 1], np.corrcoef(f.ravel(), t.ravel())[0, 1])
        assert r >= 0.999, (name, r)


def test_vit_example_with_reshape_transform():
    from camlens.compat.grad_cam.utils.reshape_transforms import vit_reshape_transform

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head: no gradient at all
    x = torch.randn(2, 3, 32, 32)
    layer = [vit.encoder.layers[-1].ln_1]

    def reshape(t):
        return vit_reshape_transform(t, height=4, width=4)

    ours = gc.GradCAM(model=vit, target_layers=layer, reshape_transform=reshape)(input_tensor=x, targets=None)
    assert ours.shape == (2, 32, 32) and np.isfinite(ours).all()
    abl = gc.AblationCAM(model=vit, target_layers=layer, reshape_transform=reshape, ablation_layer=AblationLayerVit())
    assert abl(input_tensor=x).shape == (2, 32, 32)
    peer = pytest.importorskip("pytorch_grad_cam")
    with peer.GradCAM(model=vit, target_layers=layer, reshape_transform=reshape) as cam:
        theirs = cam(input_tensor=x, targets=None)
    for o, t in zip(ours, theirs):
        assert np.corrcoef(o.ravel(), t.ravel())[0, 1] >= 0.999


def test_ablation_cam_arguments():
    model = SmallCNN().eval()
    with pytest.raises(ArgumentError, match="ratio_channels_to_ablate"):
        gc.AblationCAM(model, [model.block], ratio_channels_to_ablate=0.5)
    with pytest.raises(ArgumentError, match="ablation_layer"):
        gc.AblationCAM(model, [model.block], ablation_layer=nn.Identity())


def test_custom_base_cam_subclass_like_pytorch_grad_cam():
    class MaxGradCAM(gc.BaseCAM):
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            return np.max(grads, axis=(2, 3))

    model = SmallCNN().eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    exp = MaxGradCAM(model, [model.block]).explain(x, [ClassifierOutputTarget(1)] * 3)
    ref = gc.GradCAM(model, [model.block])
    cap = ref.engine.run(x, [ClassifierOutputTarget(1)] * 3)
    w = cap.gradients[0].amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(exp.layer_maps[0], (w * cap.activations[0]).sum(1))


def test_activations_and_gradients_records_and_releases():
    model = SmallCNN().eval()
    before = hooks_of(model)
    x = torch.randn(2, 3, 16, 16)
    with gc.ActivationsAndGradients(model, [model.stem, model.block], None) as ag:
        out = ag(x)
        assert [a.shape for a in ag.activations] == [(2, 8, 16, 16), (2, 16, 8, 8)]
        out[:, 0].sum().backward()
        assert [g.shape for g in ag.gradients] == [(2, 8, 16, 16), (2, 16, 8, 8)]
        assert all(not a.requires_grad for a in ag.activations)
    assert hooks_of(model) == before
    model.zero_grad(set_to_none=True)


def test_cam_mult_image_metrics_by_hand_and_visualization():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cams = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
    with torch.no_grad():
        before = model(x)[[0, 1], [1, 2]].numpy()
        after = model(x * torch.from_numpy(cams)[:, None])[[0, 1], [1, 2]].numpy()
    change, vis = CamMultImageConfidenceChange()(x, cams, targets, model, return_visualization=True)
    np.testing.assert_allclose(change, after - before, atol=1e-5)
    torch.testing.assert_close(vis, x * torch.from_numpy(cams)[:, None])
    np.testing.assert_allclose(DropInConfidence()(x, cams, targets, model), np.maximum(before - after, 0), atol=1e-5)
    np.testing.assert_array_equal(IncreaseInConfidence()(x, cams, targets, model), np.float32(after > before))


def test_road_noise_free_imputation_matches_peer():
    peer = pytest.importorskip("pytorch_grad_cam.metrics.road")
    img = torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(3))
    mask = (torch.rand(12, 12, generator=torch.Generator().manual_seed(4)) > 0.4).float()
    ours = NoisyLinearImputer(noise=0.0)(img, mask)
    theirs = peer.NoisyLinearImputer(noise=0.0)(img, mask)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_road_metrics_shapes_and_combined_definition():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    cams = np.random.default_rng(1).random((2, 16, 16)).astype(np.float32)
    targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(3)]
    morf, vis = ROADMostRelevantFirst(percentile=50)(x, cams, targets, model, return_visualization=True)
    assert morf.shape == (2,) and vis.shape == x.shape
    kept = torch.from_numpy(cams < np.percentile(cams[0], 50))[0]
    torch.testing.assert_close(vis[0][:, kept], x[0][:, kept])  # kept pixels untouched
    combined = ROADCombined(percentiles=[30, 70])(x, cams, targets, model)
    assert combined.shape == (2,) and np.isfinite(combined).all()


NEW_AGREE = {"SegEigenCAM": 0.999, "KPCA_CAM": 0.99}


@pytest.mark.parametrize("name", ["FEM", "RandomCAM", "SegEigenCAM", "KPCA_CAM", "SESS"])
def test_more_methods_with_peer_signatures(resnet, name):
    model, x = resnet
    kwargs = {"num_scales": 2} if name == "SESS" else {}
    with getattr(gc, name)(model, [model.layer4], None, **kwargs) as cam:
        out = cam(x, [ClassifierOutputTarget(3), ClassifierOutputTarget(4)])
    assert out.shape == (2, 64, 64) and out.dtype == np.float32 and np.isfinite(out).all()
    if name in NEW_AGREE:
        peer = pytest.importorskip("pytorch_grad_cam")
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget

        with getattr(peer, name)(model=model, target_layers=[model.layer4]) as cam:
            theirs = cam(input_tensor=x, targets=[PeerTarget(3), PeerTarget(4)])
        for o, t in zip(out, theirs):  # KPCA: the peer's sign is arbitrary
            r = np.corrcoef(o.ravel(), t.ravel())[0, 1]
            r = abs(r) if name == "KPCA_CAM" else r
            assert r >= NEW_AGREE[name], (name, r)


def test_deep_feature_factorization_peer_api(resnet):
    from camlens.compat.grad_cam.utils.image import show_factorization_on_image

    model, x = resnet
    dff = gc.DeepFeatureFactorization(model=model, target_layer=model.layer4, computation_on_concepts=model.fc)
    concepts, explanations, outputs = dff(x, n_components=3)
    assert concepts.shape == (512, 3)
    assert len(explanations) == 2 and explanations[0].shape == (3, 64, 64)
    assert explanations[0].min() >= 0 and explanations[0].max() <= 1 + 1e-6
    assert outputs.shape == (3, 10)
    rgb = np.random.default_rng(2).random((64, 64, 3)).astype(np.float32)
    vis = show_factorization_on_image(rgb, explanations[0], image_weight=0.3, concept_labels=["a", "b", "c"])
    assert vis.dtype == np.uint8 and vis.shape == (64, 128, 3)  # image plus a legend panel of its size
    only = show_factorization_on_image(rgb, explanations[0])
    assert only.shape == (64, 64, 3)


def test_kernel_and_sign_corrected_projections():
    from camlens.compat.grad_cam.utils.svd_on_activations import (
        get_2d_projection_kernel,
        get_2d_projection_with_sign_correction,
    )

    acts = np.random.default_rng(9).random((2, 6, 5, 5)).astype(np.float32)
    k = get_2d_projection_kernel(acts, kernel="rbf", gamma=0.5)
    s = get_2d_projection_with_sign_correction(acts)
    assert k.shape == s.shape == (2, 5, 5)
    for m in s:  # the larger-magnitude extreme is positive
        assert abs(m.max()) >= abs(m.min())
    peer = pytest.importorskip("pytorch_grad_cam.utils.svd_on_activations")
    np.testing.assert_allclose(s, peer.get_2d_projection_with_sign_correction(acts), atol=1e-4)
    for o, t in zip(k, peer.get_2d_projection_kernel(acts, kernel="rbf", gamma=0.5)):
        assert abs(np.corrcoef(o.ravel(), t.ravel())[0, 1]) > 0.999


def test_run_dff_on_image(resnet):
    from PIL import Image

    model, _ = resnet
    img = Image.fromarray((np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8))
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    out = gc.run_dff_on_image(model, model.layer4, model.fc, img, tensor, n_components=2, top_k=1)
    assert out.dtype == np.uint8 and out.shape == (64, 192, 3)  # image | overlay | legend
    np.testing.assert_array_equal(out[:, :64], np.asarray(img))


@pytest.mark.parametrize("name", ["FullGrad", "ShapleyCAM", "FinerCAM", "RefineCAM"])
def test_single_pass_additions_match_peer(resnet, name):
    peer = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils import model_targets as peer_targets

    from camlens.compat.grad_cam.utils import model_targets as our_targets

    model, x = resnet
    layers = [model.layer3, model.layer4] if name == "RefineCAM" else [model.layer4]
    kind = "ClassifierOutputReST" if name == "ShapleyCAM" else "ClassifierOutputTarget"  # the target each is meant for
    with warnings_ignored():
        if name == "FinerCAM":  # the peer's documented call: one class for all, comparisons by similarity
            ours = gc.FinerCAM(model, layers)(x, None, alpha=0.6, target_idx=4)
            theirs = peer.FinerCAM(model, layers)(x, None, alpha=0.6, target_idx=4)
        else:
            ours = getattr(gc, name)(model, layers)(x, [getattr(our_targets, kind)(c) for c in (3, 4)])
            theirs = getattr(peer, name)(model, layers)(x, [getattr(peer_targets, kind)(c) for c in (3, 4)])
    assert ours.shape == theirs.shape == (2, 64, 64) and ours.dtype == theirs.dtype
    compared = 0
    for o, t in zip(ours, theirs):
        if t.max() > t.min():  # a blank peer map (all channels ReLU'd away) has no correlation to compare
            assert np.corrcoef(o.ravel(), t.ravel())[0, 1] >= 0.99, name
            compared += 1
    assert compared, f"{name}: the peer gave only blank maps"


def warnings_ignored():
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def test_finer_cam_peer_call_signature_and_targets(resnet):
    from camlens.compat.grad_cam.utils.model_targets import ClassifierOutputReST, FinerWeightedTarget

    model, x = resnet
    cam = gc.FinerCAM(model, [model.layer4])
    a = cam(x, alpha=1, comparison_categories=[1, 2], target_idx=3)
    assert a.shape == (2, 64, 64) and cam.alpha == 1.0  # per-call options do not stick
    assert isinstance(FinerWeightedTarget(3, [1, 2], 0.6)(torch.randn(10)), torch.Tensor)
    assert isinstance(ClassifierOutputReST(3)(torch.randn(10)), torch.Tensor)


def test_faster_rcnn_box_score_example():
    """pytorch-grad-cam's Faster R-CNN tutorial: EigenCAM at the FPN with fasterrcnn_reshape_transform and
    FasterRCNNBoxScoreTarget on the model's own detections (random weights, small input)."""
    from camlens.compat.grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
    from camlens.compat.grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=5, min_size=96, max_size=96, box_score_thresh=0.0
    ).eval()
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        det = model(x)[0]
    assert len(det["boxes"]) > 0
    labels, boxes = det["labels"][:3].tolist(), det["boxes"][:3].numpy()
    targets = [FasterRCNNBoxScoreTarget(labels=labels, bounding_boxes=boxes)]
    before = hooks_of(model)
    cam = gc.EigenCAM(model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform)
    grayscale = cam(x, targets=targets)
    assert grayscale.shape == (1, 96, 96) and grayscale.dtype == np.float32 and np.isfinite(grayscale).all()
    assert grayscale.max() > grayscale.min()
    abl = gc.AblationCAM(model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform,
                         ablation_layer=AblationLayerFasterRCNN(), batch_size=64)
    import camlens

    assert isinstance(abl, camlens.AblationCAM)  # the FPN marker is accepted (tested on detectors in test_tasks_detection)
    assert hooks_of(model) == before and not model.training
