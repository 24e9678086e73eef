"""RT-DETR's decoder (``RTDETRTransformer``): query selection, deformable decoder, heads.

Flow (shapes for B images, S memory tokens, Q queries, C classes, D = hidden_dim):

1. ``input_proj`` projects each encoder level; levels are flattened into memory ``[B, S, D]``.
2. Encoder head: memory outside the valid anchor range is zeroed, ``enc_output`` (Linear + LN),
   ``enc_score_head`` -> ``[B, S, C]``, ``enc_bbox_head`` + anchor logits -> ``[B, S, 4]``.
3. The top ``Q`` tokens by max class logit become the initial queries (content detached) and
   reference boxes (detached); denoising queries are prepended in training.
4. Each decoder layer refines the boxes: ``sigmoid(bbox_head_i(x) + logit(ref))``. The next layer
   sees the detached box; the loss sees a box whose gradient flows into the previous layer's
   prediction (TAO/RT-DETR's scheme). Eval runs layers up to ``eval_idx`` only.

Anchors depend only on the feature-map sizes; they are cached per size and device (precomputed
for ``eval_spatial_size``), so ONNX export sees constants. Module names are TAO's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rtdetr_trainer.model.box_ops import inverse_sigmoid
from rtdetr_trainer.model.denoising import DenoisingGroup, contrastive_denoising_group
from rtdetr_trainer.model.layers import MLP, activation, attention, conv_norm
from rtdetr_trainer.model.ms_deform_attn import MSDeformableAttention


class DecoderLayer(nn.Module):
    """Post-norm layer: self-attn -> norm1 -> deformable cross-attn -> norm2 -> FFN -> norm3."""

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, dropout: float, act: str, levels: int, points: int
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformableAttention(dim, levels, heads, points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.activation = activation(act)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        tgt: Tensor,
        ref: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        attn_mask: Tensor | None,
        query_pos: Tensor,
    ) -> Tensor:
        """``tgt`` [B, Q, D], ``ref`` [B, Q, 1, 4], ``memory`` [B, S, D] -> [B, Q, D]."""
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(attention(self.self_attn, q, tgt, attn_mask)))
        cross = self.cross_attn(tgt + query_pos, ref, memory, spatial_shapes)
        tgt = self.norm2(tgt + self.dropout2(cross))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class TransformerDecoder(nn.Module):
    """The layer stack (key ``layers.{i}``) and the iterative box refinement."""

    def __init__(self, num_layers: int, eval_idx: int, *layer_args: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(num_layers))
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx

    def forward(
        self,
        tgt: Tensor,
        ref_unact: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        bbox_heads: nn.ModuleList,
        score_heads: nn.ModuleList,
        query_pos_head: nn.Module,
        attn_mask: Tensor | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Returns per-layer boxes ``[B, Q, 4]`` (sigmoid cxcywh) and logits ``[B, Q, C]``.

        Training: one entry per layer. Eval: only the ``eval_idx`` layer.
        """
        ref = torch.sigmoid(ref_unact)
        ref_prev: Tensor | None = None
        boxes: list[Tensor] = []
        logits: list[Tensor] = []
        out = tgt
        for i, layer in enumerate(self.layers):
            out = layer(
                out, ref.unsqueeze(2), memory, spatial_shapes, attn_mask, query_pos_head(ref)
            )
            delta = bbox_heads[i](out)
            inter = torch.sigmoid(delta + inverse_sigmoid(ref))
            if self.training:
                logits.append(score_heads[i](out))
                boxes.append(
                    inter if ref_prev is None else torch.sigmoid(delta + inverse_sigmoid(ref_prev))
                )
            elif i == self.eval_idx:
                logits.append(score_heads[i](out))
                boxes.append(inter)
                break
            ref_prev = inter
            ref = inter.detach() if self.training else inter
        return boxes, logits


class RTDETRTransformer(nn.Module):
    """Query selection + decoder + heads (TAO's ``decoder`` module).

    ``forward(feats, targets=None) -> dict``: eval gives ``pred_logits`` ``[B, Q, C]`` (raw
    logits, no background column) and ``pred_boxes`` ``[B, Q, 4]`` (normalised cxcywh). Training
    adds ``aux_outputs`` (decoder layers but the last), ``enc_aux_outputs`` (the encoder's
    top-k) and, when the batch has boxes, ``dn_aux_outputs`` (every layer) and ``dn_meta``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        hidden_dim: int = 256,
        num_queries: int = 300,
        feat_channels: Sequence[int] = (256, 256, 256),
        feat_strides: Sequence[int] = (8, 16, 32),
        num_levels: int = 3,
        num_points: int = 4,
        nhead: int = 8,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        act: str = "relu",
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        eval_spatial_size: tuple[int, int] | None = None,
        eval_idx: int = -1,
        eps: float = 1e-2,
        aux_loss: bool = True,
    ) -> None:
        super().__init__()
        if len(feat_channels) != num_levels or len(feat_strides) != num_levels:
            raise ValueError(
                f"num_levels {num_levels} needs as many feat_channels ({list(feat_channels)}) "
                f"and feat_strides ({list(feat_strides)})"
            )
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.feat_strides = list(feat_strides)
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.eps = eps
        self.aux_loss = aux_loss
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c, hidden_dim, 1, bias=False), norm=nn.BatchNorm2d(hidden_dim)
                )
            )
            for c in feat_channels
        )
        self.decoder = TransformerDecoder(
            num_decoder_layers, eval_idx, hidden_dim, nhead, dim_feedforward, dropout, act,
            num_levels, num_points,
        )  # fmt: skip
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(
                num_classes + 1, hidden_dim, padding_idx=num_classes
            )
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.enc_output = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(
            nn.Linear(hidden_dim, num_classes) for _ in range(num_decoder_layers)
        )
        self.dec_bbox_head = nn.ModuleList(
            MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_decoder_layers)
        )
        self._anchor_cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}
        if eval_spatial_size is not None:
            h, w = eval_spatial_size
            self._anchors(
                [(int(h / s), int(w / s)) for s in self.feat_strides], torch.device("cpu")
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Heads start at a 1% foreground prior and zero box deltas (TAO's init)."""
        prior = -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(self.enc_score_head.bias, prior)
        nn.init.zeros_(self.enc_bbox_head.layers[-1].weight)
        nn.init.zeros_(self.enc_bbox_head.layers[-1].bias)
        for cls_head, box_head in zip(self.dec_score_head, self.dec_bbox_head, strict=True):
            nn.init.constant_(cls_head.bias, prior)
            nn.init.zeros_(box_head.layers[-1].weight)
            nn.init.zeros_(box_head.layers[-1].bias)
        nn.init.xavier_uniform_(self.enc_output[0].weight)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(layer.weight)

    def _anchors(
        self, shapes: Sequence[tuple[int, int]], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Anchor logits ``[1, S, 4]`` (inf where invalid) and valid mask ``[1, S, 1]``.

        Grid-cell centres with size ``0.05 * 2**level``; anchors with any coordinate outside
        ``(eps, 1 - eps)`` are invalid.
        """
        key = (tuple(shapes), device)
        cached = self._anchor_cache.get(key)
        if cached is not None:
            return cached
        parts = []
        for lvl, (h, w) in enumerate(shapes):
            gy, gx = torch.meshgrid(
                torch.arange(h, dtype=torch.float32),
                torch.arange(w, dtype=torch.float32),
                indexing="ij",
            )
            xy = (torch.stack([gx, gy], -1) + 0.5) / torch.tensor([w, h], dtype=torch.float32)
            wh = torch.full_like(xy, 0.05 * 2.0**lvl)
            parts.append(torch.cat([xy, wh], -1).reshape(h * w, 4))
        anchors = torch.cat(parts)[None]
        valid = ((anchors > self.eps) & (anchors < 1 - self.eps)).all(-1, keepdim=True)
        logits = torch.log(anchors / (1 - anchors))
        logits = torch.where(valid, logits, torch.full_like(logits, math.inf))
        result = (logits.to(device), valid.to(device))
        self._anchor_cache[key] = result
        return result

    def _flatten(self, feats: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Project and flatten levels -> memory ``[B, S, D]`` and their ``(h, w)``."""
        if len(feats) != len(self.input_proj):
            raise ValueError(f"decoder expects {len(self.input_proj)} levels, got {len(feats)}")
        flat, shapes = [], []
        for proj, feat in zip(self.input_proj, feats, strict=True):
            x = conv_norm(proj.conv, proj.norm, feat)
            shapes.append((int(x.shape[2]), int(x.shape[3])))
            flat.append(x.flatten(2).transpose(1, 2))
        return torch.cat(flat, 1), shapes

    def forward(
        self, feats: Sequence[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Any]:
        memory, shapes = self._flatten(feats)
        S = sum(h * w for h, w in shapes)
        if self.num_queries > S:
            raise ValueError(
                f"the feature maps have {S} positions, fewer than num_queries="
                f"{self.num_queries}; use a larger input (multiple of 32)"
            )
        dn: DenoisingGroup | None = None
        if self.training and self.num_denoising > 0 and targets is not None:
            dn = contrastive_denoising_group(
                targets, self.num_classes, self.num_queries, self.denoising_class_embed,
                num_denoising=self.num_denoising, label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
            )  # fmt: skip

        anchors, valid = self._anchors(shapes, memory.device)
        enc_memory = self.enc_output(valid.to(memory.dtype) * memory)
        enc_logits = self.enc_score_head(enc_memory)  # [B, S, C]
        enc_coords = self.enc_bbox_head(enc_memory) + anchors  # [B, S, 4] logits
        topk = torch.topk(enc_logits.max(-1).values, self.num_queries, dim=1).indices

        def take(x: Tensor) -> Tensor:
            return x.gather(1, topk.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        ref_unact = take(enc_coords)
        enc_topk_boxes = torch.sigmoid(ref_unact)
        enc_topk_logits = take(enc_logits)
        content = take(enc_memory).detach()
        attn_mask = None
        if dn is None and self.training and self.num_denoising > 0:
            # A batch without boxes skips denoising; an exact zero that still touches the DN
            # embedding keeps DDP (find_unused_parameters=False) from failing on that step.
            content = content + self.denoising_class_embed.weight[:0].sum()
        if dn is not None:
            ref_unact = torch.cat([dn.ref_unact.to(ref_unact.dtype), ref_unact], 1)
            content = torch.cat([dn.query.to(content.dtype), content], 1)
            attn_mask = dn.attn_mask

        boxes, logits = self.decoder(
            content, ref_unact.detach(), memory, shapes, self.dec_bbox_head,
            self.dec_score_head, self.query_pos_head, attn_mask,
        )  # fmt: skip
        dn_boxes: list[Tensor] = []
        dn_logits: list[Tensor] = []
        if dn is not None:
            split = dn.meta["dn_num_split"]
            dn_boxes, boxes = map(list, zip(*(b.split(split, 1) for b in boxes), strict=True))
            dn_logits, logits = map(list, zip(*(c.split(split, 1) for c in logits), strict=True))

        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.training and self.aux_loss:
            out["aux_outputs"] = _pairs(logits[:-1], boxes[:-1])
            out["enc_aux_outputs"] = _pairs([enc_topk_logits], [enc_topk_boxes])
            if dn is not None:
                out["dn_aux_outputs"] = _pairs(dn_logits, dn_boxes)
                out["dn_meta"] = dn.meta
        return out


def _pairs(logits: Sequence[Tensor], boxes: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    return [{"pred_logits": c, "pred_boxes": b} for c, b in zip(logits, boxes, strict=True)]
