"""The GPU fast path for one network, in place: bf16 autocast inside its forward (logits come out float32),
channels_last weights for convolutional models, and ``torch.compile`` of its forward with a fallback to eager.

Everything that runs a network - M0 training, DtM, and every PGD (extraction, adversarial training, robustness) -
calls it through its forward, so speeding up the forward (and the backward AOTAutograd derives from it) speeds all
of them; the PGD update itself is a few elementwise ops per step. Parameters, ``state_dict`` keys and checkpoints
are unchanged: ``nn.Module.compile`` compiles the call in place, and the autocast is an instance attribute that
:func:`restore` removes again.
"""
import sys
from typing import Callable

import torch
from torch import nn


def is_convolutional(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def _autocast_forward(net: nn.Module, device_type: str) -> None:
    inner = net.forward

    def forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        return out.float()  # losses, norms and stored logits stay float32

    net.forward = forward


def _compile_with_fallback(net: nn.Module, log: Callable[[str], None]) -> None:
    """Compile the module's call; if compiling (done at the first call of each new shape) fails, say so in one line
    and run that module eagerly from then on (the call that failed is repeated eagerly)."""
    import torch._dynamo.config as dynamo
    import torch._functorch.config as functorch

    # one forward is recompiled per input shape (shards, training and test batches, each one's last batch) and per
    # generation's model; past the limit (8 by default) Dynamo would quietly run the rest eagerly
    key = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # (its older name)
    setattr(dynamo, key, max(getattr(dynamo, key), 64))
    # AOTAutograd compiles the backward lazily, at the first backward - in the trainer's or PGD's autograd call,
    # where no fallback can catch it; compiled with the forward, its failure lands in ``call`` below too (set once
    # here, like the limit above: a context manager around every call cost 21 us per forward)
    functorch.force_non_lazy_backward_lowering = True
    net.compile()
    compiled = net._compiled_call_impl

    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a compiler failure of any kind: eager still computes the same thing
            net._compiled_call_impl = None
            e = getattr(e, "inner_exception", None) or e  # Dynamo's BackendCompilerFailed wraps the compiler's error
            first = (str(e).strip().splitlines() or [""])[0][:160]
            log(f"dfm: torch.compile failed for {type(net).__name__} ({type(e).__name__}: {first}); running it eagerly")
            return net._call_impl(*args, **kwargs)

    net._compiled_call_impl = call


def accelerate(net: nn.Module, device: torch.device, bf16: bool = True, channels_last: bool = True,
               compile: bool = True, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> nn.Module:
    """Switch ``net`` to the fast path for ``device`` (idempotent; :func:`restore` undoes it)."""
    if getattr(net, "_dfm_fast", False):
        return net
    net._dfm_channels_last = channels_last and is_convolutional(net)
    if net._dfm_channels_last:
        net.to(memory_format=torch.channels_last)  # cuDNN's bf16 convolutions want NHWC; inputs follow the weights
    if bf16:
        _autocast_forward(net, device.type)
    if compile:
        _compile_with_fallback(net, log)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.set_float32_matmul_precision("high")  # what stays fp32 may use TF32
    net._dfm_fast = True
    return net


def restore(net: nn.Module) -> nn.Module:
    """Undo :func:`accelerate`: the eager float32 network again, computing exactly what it did before."""
    if getattr(net, "_dfm_fast", False):
        if net._dfm_channels_last:
            net.to(memory_format=torch.contiguous_format)
        net.__dict__.pop("forward", None)
        net._compiled_call_impl = None
        net._dfm_fast = False
    return net
