"""LeGrad (Bousselham et al., 2024, arXiv:2404.03214): gradients w.r.t. ViT attention maps."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import postprocess as pp
from ..engine import CamLensWarning, Capture, Engine, OutputAdapter
from ..errors import ArgumentError, InputTypeError, LayerNotFoundError, LayerOutputError
from ..hooks import HookSet, LayerSpec, layer_value, resolve_layers
from ..registry import register
from ..layers import reshape_transform_for
from ..reshape import TokenReshape
from ..targets import TargetFn, score_targets
from .base import BaseCAM, LayerContext

Readout = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- attention modules
def _is_timm_attention(m: nn.Module) -> bool:
    return (
        isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(getattr(m, "proj", None), nn.Linear)
        and isinstance(getattr(m, "num_heads", None), int)
    )


def _heads(m: nn.Module) -> int | None:
    heads = next((getattr(m, n) for n in ("num_attention_heads", "num_heads") if isinstance(getattr(m, n, None), int)), None)
    return heads if heads and not isinstance(heads, bool) and heads > 0 else None


def _linear(m: nn.Module, path: str) -> nn.Linear | None:
    for name in path.split("."):
        m = getattr(m, name, None)
    return m if isinstance(m, nn.Linear) else None


@dataclass(frozen=True)
class _SplitParts:
    """Where ``V`` and ``U`` of an attention with separate projections are read."""

    value: nn.Linear  # V = value(x)
    out: nn.Linear  # its input is U = A V (heads concatenated)
    heads: int


def _split_parts(m: nn.Module) -> _SplitParts | None:
    """An attention with separate query / key / value projections, in one of two layouts:

    * ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` (or ``out_proj``) on the module, with a head
      count: HuggingFace ViT / DeiT / BEiT / DINOv2 in transformers 5, CLIP;
    * transformers 4.x: ``attention.query`` / ``.key`` / ``.value`` (with ``num_attention_heads``)
      and ``output.dense``.
    """
    if all(_linear(m, n) is not None for n in ("q_proj", "k_proj", "v_proj")) and _heads(m):
        out = _linear(m, "o_proj") or _linear(m, "out_proj")
        if out is not None:
            return _SplitParts(_linear(m, "v_proj"), out, _heads(m))  # type: ignore[arg-type]
    inner = getattr(m, "attention", None)
    if isinstance(inner, nn.Module) and _heads(inner) and _linear(m, "output.dense") is not None:
        if all(_linear(inner, n) is not None for n in ("query", "key", "value")):
            return _SplitParts(_linear(inner, "value"), _linear(m, "output.dense"), _heads(inner))  # type: ignore[arg-type]
    return None


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m) or _split_parts(m) is not None


def attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, block)`` of every module with exactly one self-attention child, in model order:
    torchvision ViT ``encoder.layers[i]`` (``self_attention``), timm ViT/DeiT ``blocks[i]`` (``attn``),
    HuggingFace ``layers[i]`` / ``encoder.layer[i]`` (``attention``)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if not _is_attention(m) and sum(_is_attention(c) for c in m.children()) == 1
    ]


def _enclosing_blocks(
    model: nn.Module, spec: LayerSpec | Sequence[LayerSpec], blocks: list[tuple[str, nn.Module]]
) -> list[nn.Module]:
    """Target layers as blocks: a layer inside a block (its attention, ``ln_1``, ``norm1``, ...)
    stands for that block, so the target layers other CAM methods use on a ViT work here too."""
    out: list[nn.Module] = []
    for name, module in resolve_layers(model, spec):
        block = module
        for block_name, candidate in blocks:
            if name.startswith(block_name + "."):
                block = candidate
        if all(block is not b for b in out):
            out.append(block)
    return out


@dataclass
class _Captured:
    """What one block left during the forward pass."""

    leaf: torch.Tensor | None = None  # where the gradient is taken: U (timm) or the MHA output o
    value: torch.Tensor | None = None  # timm: V (N, heads, T, d); MHA: the value *input* (N, T, C)
    tokens: torch.Tensor | None = None  # the block output z^l, attached to the graph from `leaf` on


@dataclass
class _Attention:
    """Reads ``dS/dA`` of one attention module from the gradient at its output.

    With ``U_h = A_h V_h`` (heads concatenated: ``U``) the attention's only use of ``A``,
    ``dS/dA_h = dS/dU_h V_h^T`` exactly; the softmax is never recomputed. ``U`` is captured as the
    input of timm's ``attn.norm`` / ``attn.proj`` (``V`` from ``attn.qkv``'s output) or of
    HuggingFace's ``o_proj`` / ``output.dense`` (``V`` from ``v_proj`` / ``attention.value``); for
    ``nn.MultiheadAttention`` (whose ``U`` and ``V`` never leave the fused kernel) the gradient at
    its output ``o = U W_o^T + b_o`` gives ``dS/dU = dS/do W_o`` and ``V = x W_v^T + b_v``.
    """

    name: str
    module: nn.Module

    @classmethod
    def of_block(cls, name: str, block: nn.Module) -> "_Attention":
        if _is_attention(block):
            raise LayerNotFoundError(
                f"target layer {name!r} is an attention module; LeGrad needs the transformer block that "
                f"contains it (its parent) to read the block's output"
            )
        found = [c for c in block.children() if _is_attention(c)]
        if len(found) != 1:
            raise LayerNotFoundError(
                f"target layer {name!r} ({type(block).__name__}) has {len(found)} self-attention children; "
                "LeGrad explains vision transformers and needs blocks with one self-attention module "
                "(torchvision ViT 'encoder.layers[i]', timm ViT/DeiT 'blocks[i]')"
            )
        att = found[0]
        if isinstance(att, nn.MultiheadAttention):
            if att.bias_k is not None or att.add_zero_attn:
                raise LayerNotFoundError(f"LeGrad does not support nn.MultiheadAttention with bias_k/add_zero_attn in {name!r}")
        elif getattr(att, "gate", None) is not None:
            raise LayerNotFoundError(f"LeGrad does not support gated attention (attn.gate) in {name!r}")
        return cls(name, att)

    # -- hooks
    def register(self, hooks: HookSet, index: int, store: dict[int, _Captured]) -> None:
        m = self.module
        if isinstance(m, nn.MultiheadAttention):
            hooks.forward(m, self._mha_hook(index, store), with_kwargs=True)
            return
        parts = _split_parts(m)
        if parts is not None:
            hooks.forward(parts.value, self._value_hook(index, store, parts.heads))
            hooks.forward_pre(parts.out, self._leaf_pre_hook(index, store))
            return
        hooks.forward(m.qkv, self._qkv_hook(index, store))
        consumer = m.norm if isinstance(getattr(m, "norm", None), nn.Module) else m.proj
        hooks.forward_pre(consumer, self._leaf_pre_hook(index, store))

    @staticmethod
    def _make_leaf(t: torch.Tensor) -> torch.Tensor:
        torch.set_grad_enabled(True)  # record from here to the block's output (the block hook stops it)
        return t.detach().requires_grad_(True)

    def _mha_hook(self, index: int, store: dict[int, _Captured]) -> Callable[..., Any]:
        def hook(m: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Any:
            names = ("query", "key", "value")
            q, k, v = (args[i] if len(args) > i else kwargs.get(n) for i, n in enumerate(names))
            if not (q is k and k is v):
                raise LayerOutputError(f"LeGrad needs self-attention (query is key is value) in {self.name!r}")
            leaf = self._make_leaf(output[0])
            store[index] = _Captured(leaf, (v if m.batch_first else v.transpose(0, 1)).detach())
            return (leaf, *output[1:])  # an in-place op on it downstream would raise, not corrupt

        return hook

    def _qkv_hook(self, index: int, store: dict[int, _Captured]) -> Callable[..., Any]:
        def hook(qkv: nn.Module, args: Any, output: torch.Tensor) -> None:
            n, t, three_d = output.shape
            heads = self.module.num_heads
            d = three_d // 3
            store[index] = _Captured(value=output.detach()[..., 2 * d :].reshape(n, t, heads, d // heads).transpose(1, 2))

        return hook

    def _value_hook(self, index: int, store: dict[int, _Captured], heads: int) -> Callable[..., Any]:
        def hook(v_proj: nn.Module, args: Any, output: torch.Tensor) -> None:
            n, t, c = output.shape
            store[index] = _Captured(value=output.detach().reshape(n, t, heads, c // heads).transpose(1, 2))

        return hook

    def _leaf_pre_hook(self, index: int, store: dict[int, _Captured]) -> Callable[..., Any]:
        def hook(consumer: nn.Module, args: tuple) -> tuple:
            leaf = self._make_leaf(args[0])
            store[index].leaf = leaf
            return (leaf, *args[1:])

        return hook

    # -- arithmetic
    def relevance(self, grad: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``E^l (N, T) = 1/(H T) sum_h sum_i ReLU(dS/dA[h, i, :])`` from the gradient at the leaf."""
        m = self.module
        mha = isinstance(m, nn.MultiheadAttention)
        if mha and not m.batch_first:
            grad = grad.transpose(0, 1)
        n, t, _ = grad.shape
        # Queries whose gradient is zero in every image add nothing (a class-token readout leaves one).
        rows = grad.ne(0).any(dim=2).any(dim=0).nonzero().flatten()
        g = grad[:, rows]
        if not mha:
            heads, d = value.shape[1], value.shape[-1]
            g = g.reshape(n, len(rows), heads, d).transpose(1, 2)  # (N, heads, queries, d)
            return (g @ value.transpose(-1, -2)).clamp_min(0).sum(dim=2).mean(dim=1) / t
        e, heads = m.embed_dim, m.num_heads
        d = e // heads
        g = (g @ m.out_proj.weight.detach().to(g.dtype)).reshape(n, len(rows), heads, d)  # dS/dU on those queries
        w_v = (m.in_proj_weight[2 * e :] if m.in_proj_weight is not None else m.v_proj_weight).detach().to(g.dtype)
        b_v = None if m.in_proj_bias is None else m.in_proj_bias[2 * e :].detach().to(g.dtype)
        if len(rows) * heads <= e:
            # Few queries: dS/dA[h, i, j] = x_j . (W_vh^T g_hi) + b_vh . g_hi, never forming V.
            proj = torch.einsum("nrhd,hdc->nrhc", g, w_v.reshape(heads, d, -1))
            d_attn = torch.einsum("nrhc,ntc->nhrt", proj, value)
            if b_v is not None:
                d_attn = d_attn + torch.einsum("nrhd,hd->nhr", g, b_v.reshape(heads, d))[..., None]
        else:
            v = F.linear(value, w_v, b_v).reshape(n, t, heads, d).transpose(1, 2)  # (N, heads, T, d)
            d_attn = g.transpose(1, 2) @ v.transpose(-1, -2)
        return d_attn.clamp_min(0).sum(dim=2).mean(dim=1) / t


# ----------------------------------------------------------------------------- readout
def default_readout(model: nn.Module) -> Readout:
    """The model's own final norm, pooling and head, applied to a block's output tokens:
    torchvision ViT ``heads(encoder.ln(z)[:, 0])`` (class token), timm ``forward_head(norm(z))``."""
    encoder = getattr(model, "encoder", None)
    if (
        isinstance(getattr(encoder, "ln", None), nn.Module)
        and isinstance(getattr(model, "heads", None), nn.Module)
        and isinstance(getattr(model, "class_token", None), torch.Tensor)
    ):
        return lambda z: model.heads(model.encoder.ln(z[:, :1])[:, 0])  # LayerNorm is per token
    if callable(getattr(model, "forward_head", None)) and isinstance(getattr(model, "norm", None), nn.Module):
        return lambda z: model.forward_head(model.norm(z))
    hf = _huggingface_readout(model)
    if hf is not None:
        return hf
    raise ArgumentError(
        f"LeGrad does not know how {type(model).__name__} turns a block's tokens into its output; pass "
        "readout=<callable mapping tokens (N, T, C) to the model output (N, classes)>, e.g. "
        "lambda z: model.head(model.norm(z)[:, 0])"
    )


def _huggingface_readout(model: nn.Module) -> Readout | None:
    """The heads of HuggingFace's ``...ForImageClassification`` ViT models, as their ``forward``
    applies them to the base model's final norm (checked against the model's output at every call):
    class token (ViT, DeiT), class + distillation tokens averaged (DeiT with teacher), the base
    model's pooler (BEiT: mean of the patch tokens, or the class token), class token next to the
    mean of the patch tokens after the register tokens (DINOv2)."""
    kind = type(model).__name__
    bases = [c for c in model.children() if isinstance(getattr(c, "layernorm", None), nn.Module)]
    if len(bases) != 1:
        return None
    base = bases[0]

    def norm(z: torch.Tensor) -> torch.Tensor:
        return base.layernorm(z)

    if kind in ("ViTForImageClassification", "DeiTForImageClassification") and isinstance(
        getattr(model, "classifier", None), nn.Module
    ):
        return lambda z: model.classifier(norm(z)[:, 0])
    if kind == "DeiTForImageClassificationWithTeacher":
        return lambda z: (model.cls_classifier(norm(z)[:, 0]) + model.distillation_classifier(norm(z)[:, 1])) / 2
    if kind in ("BeitForImageClassification", "Data2VecVisionForImageClassification") and isinstance(
        getattr(base, "pooler", None), nn.Module
    ):
        return lambda z: model.classifier(base.pooler(norm(z)))
    if kind in ("Dinov2ForImageClassification", "Dinov2WithRegistersForImageClassification"):
        skip = 1 + int(getattr(getattr(model, "config", None), "num_register_tokens", 0) or 0)
        return lambda z: model.classifier(torch.cat([norm(z)[:, 0], norm(z)[:, skip:].mean(dim=1)], dim=1))
    return None


# ----------------------------------------------------------------------------- runner
class _LeGradEngine(Engine):
    """One forward pass (autograd on only inside each target block, after its attention) and one
    backward for all layers at once: each block's output is detached before the next block, so
    ``d(sum_l s^l)/dA^l = ds^l/dA^l``, the per-layer gradient of the paper."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        attentions: list[_Attention],
        readout: Readout,
        check_readout: bool,
        output_adapter: OutputAdapter | None,
        *,
        allow_nonfinite: bool = False,
    ) -> None:
        super().__init__(model, layers, output_adapter, allow_nonfinite=allow_nonfinite)
        self.attentions = attentions
        self.readout = readout
        self.check_readout = check_readout

    def _block_hook(self, index: int, store: dict[int, _Captured]) -> Callable[..., Any]:
        name = self.layers[index][0]

        def hook(block: nn.Module, args: Any, output: Any) -> Any:
            found = layer_value(output)  # a block returning a tuple (transformers 4.x): its first tensor
            tokens = found[0] if found is not None else output
            if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
                shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(output).__name__
                raise LayerOutputError(f"LeGrad target block {name!r} returned {shape}; expected tokens (N, T, C)")
            captured = store.get(index)
            if captured is None or captured.leaf is None:
                raise LayerOutputError(f"the attention of LeGrad target block {name!r} did not run inside the block")
            captured.tokens = tokens
            torch.set_grad_enabled(False)
            return found[1](tokens.detach())  # cut: later blocks do not feed back into this layer's gradient

        return hook

    def run(
        self,
        x: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: Any = None,
        need_gradients: bool = True,
        resolve_targets: Any = None,
    ) -> Capture:
        store: dict[int, _Captured] = {}
        with HookSet() as hooks:
            for i, att in enumerate(self.attentions):
                att.register(hooks, i, store)
                hooks.forward(self.layers[i][1], self._block_hook(i, store))
            # The plain engine runs the forward (no grad), checks outputs and resolves targets.
            cap = super().run(
                x, targets, target_category=target_category, need_gradients=False, resolve_targets=resolve_targets
            )
        with torch.enable_grad():
            per_layer = [self.readout(store[i].tokens) for i in range(len(self.layers))]
            total = sum(score_targets(cap.targets, logits).sum() for logits in per_layer)
            leaves = [store[i].leaf for i in range(len(self.layers))]
            if isinstance(total, torch.Tensor) and total.requires_grad:
                grads = torch.autograd.grad(total, leaves, allow_unused=True)
            else:  # the targets ignore the output: every map is zero (warned below)
                grads = tuple(None for _ in leaves)
        if self.check_readout:
            self._check(per_layer[-1].detach(), cap.outputs)
        maps = []
        with torch.no_grad():
            for i, (att, grad) in enumerate(zip(self.attentions, grads)):
                if grad is None:
                    warnings.warn(
                        f"LeGrad: the score read out at block {att.name!r} does not depend on its attention; its map is zero",
                        CamLensWarning,
                        stacklevel=5,
                    )
                    grad = torch.zeros_like(leaves[i])
                maps.append(att.relevance(grad.float(), store[i].value.float())[..., None])  # (N, T, 1)
        return Capture(cap.outputs, cap.scores, cap.targets, activations=maps, gradients=None)

    def _check(self, last: torch.Tensor, outputs: torch.Tensor) -> None:
        if last.shape == outputs.shape and torch.allclose(last.float(), outputs.float(), rtol=1e-3, atol=1e-3):
            return
        warnings.warn(
            f"LeGrad's readout of the last block gives outputs of shape {tuple(last.shape)} that differ from the "
            f"model's {tuple(outputs.shape)}; the per-layer scores are then not the model's. Pass "
            "readout=<callable tokens -> model output> for this model",
            CamLensWarning,
            stacklevel=5,
        )


# ----------------------------------------------------------------------------- the method
@register("legrad", "le-grad")
class LeGrad(BaseCAM):
    """LeGrad: positive gradients of each layer's score w.r.t. that layer's attention map.

    For each target block ``l`` (default: every attention block) with attention probabilities
    ``A^l`` (heads ``H``, tokens ``T``) and output tokens ``z^l``, the score the model would give
    if ``l`` were its last block is read out by the model's own head (``s^l = target(head(norm(
    z^l)))``; torchvision: the class token, timm: the model's pooling). Then::

        E^l   = 1/(H T) sum_h sum_i ReLU( ds^l / dA^l[h, i, :] )     (T keys; queries i incl. class token)
        map   = minmax( mean_l E^l )   on the patch grid (prefix tokens dropped)

    Per layer, the gradient is taken of *that layer's* score w.r.t. *that layer's* attention map
    (later layers do not feed in). With a class-token readout only the class token's query row
    carries gradient, so ``E^l`` is read out at the class token: ``1/(H T) sum_h ReLU(ds^l/dA^l[h, 0, :])``.
    Exact: ``dS/dA_h = dS/dU_h V_h^T`` with ``U_h = A_h V_h``, so the (possibly fused) softmax is never recomputed and no module is replaced; one forward pass
    and one backward pass through the post-attention half of each block.

    Choices where the paper leaves room: the per-layer readout is the model's head (class token
    for torchvision ViT, as the model itself reads out); the official code for CLIP and torchcam
    0.5.0 average the tokens first (``readout=lambda z: model.heads(model.encoder.ln(z.mean(1)))``
    reproduces torchcam exactly). The default layers are all blocks ("we aggregate the signal over
    all layers"); the official CLIP wrapper defaults to the last two (pass ``target_layers``).

    Several target layers are merged *before* normalisation (``combine``: mean, as in the paper,
    or max); ``eigen_smooth`` does not apply and is ignored; ``aug_smooth`` works. Works with
    torchvision ``VisionTransformer``, timm ViT/DeiT (``blocks[i].attn``) and HuggingFace
    ViT/DeiT/BEiT/DINOv2 classifiers (transformers 5: ``q_proj``/``k_proj``/``v_proj``/``o_proj``,
    read out by the model's own head and checked against its output); any other model with
    such blocks needs ``readout=`` (tokens ``(N, T, C)`` -> the scores the targets read, i.e. the
    model output after ``output_adapter``). Models without attention blocks raise ``LayerNotFoundError``.
    A target layer inside a block (``"blocks[-1].norm1"``, the layer other methods use on a ViT)
    stands for its block. ``reshape_transform`` (default: :class:`~camlens.reshape.TokenReshape`
    from the model) lays the ``(N, T, 1)`` relevance of the keys out on the patch grid.

    Paper: Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability Method for
    Vision Transformers via Feature Formation Sensitivity", 2024, arXiv:2404.03214 (ICCV 2025).

    Example::

        # vit: e.g. timm.create_model("vit_tiny_patch16_224", pretrained=True).eval()
        images = torch.rand(2, 3, 64, 64)                            # vit here takes 64 px
        maps = LeGrad(vit)(input_tensor=images, target_category=281)   # every block
        maps = LeGrad(vit, ["blocks[-1]"])(images)                     # the last block only
    """

    paper = "Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation Sensitivity, 2024"
    summary = "positive gradients of each layer's score w.r.t. its attention map, averaged (vision transformers)"
    formula = r"s^l = y^c\big(\operatorname{head}(z^l)\big),\quad E^l = \frac{1}{HT}\sum_h \sum_i \operatorname{ReLU}\Big(\frac{\partial s^l}{\partial A^l_{h,i,:}}\Big),\qquad L^c = \operatorname{minmax}\Big(\frac{1}{|\Lambda|}\sum_{l \in \Lambda} E^l\Big)"
    cost = "one forward pass, then one backward pass through the post-attention half of each target block; each block's own score is read out by the model's head; no parameter gradients"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec] | None = None,
        use_cuda: bool | None = None,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        readout: Readout | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if readout is not None and not callable(readout):
            raise InputTypeError(f"readout must be a callable tokens -> model output; got {type(readout).__name__}")
        spec = target_layers if target_layers is not None else kwargs.pop("target_layer", None)
        blocks = attention_blocks(model)
        if spec is None:
            if not blocks:
                raise LayerNotFoundError(
                    f"LeGrad explains vision transformers, and {type(model).__name__} has no transformer block with "
                    "self-attention (torchvision ViT 'encoder.layers[i].self_attention', timm ViT/DeiT "
                    "'blocks[i].attn', HuggingFace 'layers[i].attention' with q_proj/k_proj/v_proj/o_proj); "
                    "use a CAM method such as GradCAM for this model"
                )
            target_layers = [m for _, m in blocks]
        else:
            target_layers = _enclosing_blocks(model, spec, blocks)
        if reshape_transform is None:
            found = reshape_transform_for(model)  # the model's own layout, also on a HuggingFace base model
            reshape_transform = found if isinstance(found, TokenReshape) else TokenReshape()
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        attentions = [_Attention.of_block(name, block) for name, block in self.layers]
        self.readout = readout if readout is not None else default_readout(model)
        # The default readout of the model's last block must reproduce the model's output: checked.
        check = readout is None and bool(blocks) and blocks[-1][1] is self.layers[-1][1]
        self.engine = _LeGradEngine(
            model, self.layers, attentions, self.readout, check, self.output_adapter,
            allow_nonfinite=self.engine.allow_nonfinite,
        )

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str | None:
        if attention_blocks(model):
            return None
        return f"LeGrad explains vision transformers and {type(model).__name__} has no self-attention block"

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        return ctx.activations[:, 0]  # E^l on the patch grid

    def _finish(self, raw_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        merged = raw_maps[0] if len(raw_maps) == 1 else pp.combine(raw_maps, "max" if self.combine == "max" else "mean")
        return pp.minmax_normalize(pp.upsample(merged, size))
