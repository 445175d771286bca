"""Model registry (reference he-y/Multisize-Dataset-Condensation/models/; reference
he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#the-dynamics-run, #pruned-set-evaluation).

Every registered factory is called with keyword arguments only:
``factory(*, nclass, nch, size, depth, width, norm_type, dataset) -> nn.Module``; factories ignore
the arguments that do not apply to them (the eval shorthands fix depth and norm).

Names: ``convnet``, ``resnet_ap``, ``resnet``, ``densenet`` (reference ``--net_type`` values) and the
``--eval_net`` shorthands ``resnet10_bn``, ``resnet10_in``, ``resnet18_bn``, ``resnet10_ap``
(ResNetAP-10, instance norm, width passed through) and ``convnet3`` (ConvNet-3, instance, width 128).
"""
from utils.config import registrar
from utils.errors import UserError

from .convnet import ConvNet
from .densenet_cifar import DenseNet, densenet_cifar
from .resnet import ResNet
from .resnet_ap import ResNetAP

MODELS = {}


class ModelError(UserError, ValueError):
    """Unknown model name or invalid model configuration (a ``UserError`` and a ``ValueError``)."""


register_model = registrar(MODELS, "model")  # @register_model(name)


def convnet_depth(depth):
    """Reference rule: for convnet any depth > 4 becomes 3 (MDC reference argument.py)."""
    return 3 if depth > 4 else depth


@register_model("convnet")
def _convnet(*, nclass, nch, size, depth, width, norm_type, dataset):
    # define_model: width int(128*width), (size, size) (MDC reference models/convnet.py, ConvNet; train.py)
    return ConvNet(nclass, nch=nch, net_width=int(128 * width), net_depth=convnet_depth(depth),
                   net_norm=norm_type, im_size=(size, size))


@register_model("resnet_ap")
def _resnet_ap(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNetAP(dataset, depth, nclass, width=width, norm_type=norm_type, size=size, nch=nch)


@register_model("resnet")
def _resnet(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNet(dataset, depth, nclass, norm_type=norm_type, size=size, nch=nch)


@register_model("densenet")
def _densenet(*, nclass, nch, size, depth, width, norm_type, dataset):
    return densenet_cifar(nclass=nclass, nch=nch)


@register_model("resnet10_bn")
def _resnet10_bn(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNet(dataset, 10, nclass, norm_type="batch", size=size, nch=nch)


@register_model("resnet10_in")
def _resnet10_in(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNet(dataset, 10, nclass, norm_type="instance", size=size, nch=nch)


@register_model("resnet18_bn")
def _resnet18_bn(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNet(dataset, 18, nclass, norm_type="batch", size=size, nch=nch)


@register_model("resnet10_ap")
def _resnet10_ap(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ResNetAP(dataset, 10, nclass, width=width, norm_type="instance", size=size, nch=nch)


@register_model("convnet3")
def _convnet3(*, nclass, nch, size, depth, width, norm_type, dataset):
    return ConvNet(nclass, nch=nch, net_width=128, net_depth=3, net_norm="instance",
                   im_size=(size, size))


def create_model(name, *, nclass, nch=3, size=32, depth=3, width=1.0, norm_type="instance",
                 dataset="cifar10"):
    """Build registered model ``name``; raises ``ModelError`` (a ValueError) on bad input."""
    if name not in MODELS:
        hint = " (EfficientNet is not re-implemented, docs/reference-differences.md#deliberate-deviations-ours)" if name.startswith("efficient") else ""
        raise ModelError(f"unknown model {name!r}{hint}; known models: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](nclass=nclass, nch=nch, size=size, depth=depth, width=width,
                            norm_type=norm_type, dataset=dataset)
    except ModelError:
        raise
    except ValueError as e:
        raise ModelError(f"model {name!r}: {e}") from e


def define_model(args, nclass):
    """Reference ``train.define_model`` (MDC reference train.py): ``args.net_type`` plus args.depth, width,
    norm_type, size, nch (default 3) and dataset."""
    return create_model(args.net_type, nclass=nclass, nch=getattr(args, "nch", 3), size=args.size,
                        depth=args.depth, width=args.width, norm_type=args.norm_type,
                        dataset=args.dataset)


__all__ = ["MODELS", "ModelError", "register_model", "create_model", "define_model",
           "convnet_depth", "ConvNet", "ResNet", "ResNetAP", "DenseNet", "densenet_cifar"]
