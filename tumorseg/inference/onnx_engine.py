"""ONNX Runtime as the CPU engine of small networks, behind the ``nn.Module`` interface
the inference stages call, so one code path runs either engine.

:func:`export_onnx` writes a network's graph for one image at a time and checks it
against torch on every given input before keeping it: an export is not assumed
right: MONAI's ResNet builds its type-A shortcuts from ``out.data``, which a trace
records as a constant (the traced image's own features), so the exported gray net
and classifier answered every other image wrongly; :func:`traceable` swaps those
shortcuts for an equivalent module first. The batch is fixed at one (those shortcuts'
zero padding is sized by the traced batch; ONNX Runtime's gain is largest there too).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tumorseg.errors import ModelArtifactError

INPUT, OUTPUT = "input", "output"


def export_onnx(
    model: nn.Module, example: np.ndarray, path: str | Path, tolerance: float = 1e-4
) -> float:
    """Write ``model`` as ONNX at ``path``; returns the largest difference from torch on
    each image of ``example`` (``(N, C, H, W)``), and refuses above ``tolerance``."""
    import onnxruntime

    path = Path(path)
    model = model.cpu().eval()  # the check compares against the network as it is
    inputs = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    torch.onnx.export(
        traceable(model).eval(),
        (inputs[:1],),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=17,
        dynamo=False,  # the TorchScript exporter: no onnxscript dependency
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for image in inputs.split(1):
        with torch.no_grad():
            expected = model(image).numpy()
        got = session.run(None, {INPUT: image.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    if worst > tolerance:
        path.unlink()
        raise ModelArtifactError(
            f"the ONNX export of {type(model).__name__} differs from torch by {worst:.3g} "
            f"(> {tolerance:g}); not written"
        )
    return worst


class ZeroPadShortcut(nn.Module):
    """MONAI ResNet's type-A shortcut (strided identity, zero-padded channels), traceable."""

    def __init__(self, planes: int, stride: int) -> None:
        super().__init__()
        self.planes, self.stride = planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x[:, :, :: self.stride, :: self.stride]
        pad = torch.zeros_like(out[:, :1]).expand(-1, self.planes - out.shape[1], -1, -1)
        return torch.cat([out, pad], dim=1)


def traceable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose partial-function shortcuts are :class:`ZeroPadShortcut`."""
    model = copy.deepcopy(model)
    for module in model.modules():
        shortcut = getattr(module, "downsample", None)
        if isinstance(shortcut, functools.partial) and "downsample_basic_block" in getattr(
            shortcut.func, "__name__", ""
        ):
            arguments = shortcut.keywords
            module.downsample = ZeroPadShortcut(arguments["planes"], arguments["stride"])
    return model


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session that the stages call like the torch network (CPU only),
    one image at a time (see :func:`export_onnx`)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = str(path)
        self.session = onnxruntime.InferenceSession(
            self.path, options, providers=["CPUExecutionProvider"]
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.device.type != "cpu":
            raise ValueError("the ONNX engine runs on the CPU; use torch on GPUs")
        array = np.ascontiguousarray(inputs.detach().numpy(), dtype=np.float32)
        outputs = [self.session.run(None, {INPUT: array[i : i + 1]})[0] for i in range(len(array))]
        return torch.from_numpy(np.concatenate(outputs))
