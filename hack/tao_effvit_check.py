"""Compare ``EfficientViTL2`` with TAO's own EfficientViT-L2 backbone, given a TAO source checkout.

    python hack/tao_effvit_check.py /path/to/tao_pytorch_backend

TAO's training package is not installable from PyPI, so this imports four of its source files
unchanged (``cv/backbone_v2/{efficientvit,backbone_base}.py``, ``cv/backbone_v2/nn/norm.py``,
``cv/rtdetr/model/backbone/efficientvit.py``) from a temporary package whose other modules are
stubs for import plumbing only (the registries, logging, the distributed rank, timm's
``trunc_normal_``). It builds TAO's ``efficientvit_l2()``, gives it random weights and BN
statistics, loads the same state dict strictly into ours and prints the largest output difference
per level at 640x640, 544x960 and 128x128 (the last uses the small-map attention form). Exit 1 if
keys, order or shapes differ or an output differs by more than 1e-4.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PKG = "nvidia_tao_pytorch"
REAL = (
    "cv/backbone_v2/efficientvit.py",
    "cv/backbone_v2/backbone_base.py",
    "cv/backbone_v2/nn/norm.py",
    "cv/rtdetr/model/backbone/efficientvit.py",
)
REGISTRY = (
    "class Registry:\n"
    "    def register(self, *a, **k):\n"
    "        return a[0] if a and callable(a[0]) else (lambda f: f)\n"
)
STUBS = {
    "_reg.py": REGISTRY,
    "cv/backbone_v2/__init__.py": f"from {PKG}._reg import Registry\n"
    "BACKBONE_REGISTRY = Registry()\n",
    "cv/rtdetr/model/backbone/registry.py": f"from {PKG}._reg import Registry\n"
    "RTDETR_BACKBONE_REGISTRY = Registry()\n",
    "core/distributed/comm.py": "def get_global_rank():\n    return 0\n",
    "core/tlt_logging.py": "import logging  # noqa: F401\n",
}


def build_package(tao: Path, root: Path) -> None:
    for rel in REAL:
        dst = root / PKG / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text((tao / PKG / rel).read_text())
    for rel, text in STUBS.items():
        dst = root / PKG / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
    for d in (root / PKG).rglob("*"):
        if d.is_dir() and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    (root / PKG / "__init__.py").write_text("")
    (root / "timm" / "layers").mkdir(parents=True)
    (root / "timm" / "__init__.py").write_text("")
    (root / "timm" / "layers" / "__init__.py").write_text(
        "from torch.nn.init import trunc_normal_  # noqa: F401\n"
    )


def randomise(sd: dict[str, torch.Tensor], seed: int = 1) -> None:
    """Weights of the scale a trained model has; BN statistics away from 0/1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                continue
            if k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
            elif k.endswith(("running_mean", ".bias")):
                v.copy_(torch.randn(v.shape, generator=g) * 0.05)
            elif v.ndim == 1:
                v.copy_(1 + torch.randn(v.shape, generator=g) * 0.1)
            else:
                v.copy_(torch.randn(v.shape, generator=g) * v[0].numel() ** -0.5)


def main(argv: list[str]) -> int:
    tao = Path(argv[0]).resolve()
    commit = subprocess.run(
        ["git", "-C", str(tao), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"TAO source: {tao} {commit or '(not a git checkout)'}")
    with tempfile.TemporaryDirectory() as tmp:
        build_package(tao, Path(tmp))
        sys.path.insert(0, tmp)
        from nvidia_tao_pytorch.cv.rtdetr.model.backbone.efficientvit import efficientvit_l2

        from rtdetr_trainer.model.efficientvit import EfficientViTL2

        theirs, ours = efficientvit_l2().eval(), EfficientViTL2().eval()
        sd = theirs.state_dict()
        same = list(sd) == list(ours.state_dict()) and all(
            v.shape == ours.state_dict()[k].shape for k, v in sd.items()
        )
        print(f"{len(sd)} entries; same keys, order and shapes: {same}")
        randomise(sd)
        ours.load_state_dict(sd, strict=True)
        worst = 0.0
        g = torch.Generator().manual_seed(2)
        for hw in ((640, 640), (544, 960), (128, 128)):
            x = torch.rand(1, 3, *hw, generator=g)
            with torch.no_grad():
                a, b = theirs.forward_feature_pyramid(x), ours(x)
            for i, (u, v) in enumerate(zip(a, b, strict=True)):
                d = float((u - v).abs().max())
                worst = max(worst, d)
                print(f"{hw} level {i} {tuple(u.shape)}: max |diff| {d:.2e} "
                      f"(max |output| {float(u.abs().max()):.2f})")  # fmt: skip
    return 0 if same and worst <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
