"""Stand-ins for the transforms smalldiffusion builds at import time (see __init__)."""


class _Unusable:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError("torchvision is a CI stub in this environment (.ci/torchvision_stub)")


class Compose(_Unusable):
    pass


class RandomHorizontalFlip(_Unusable):
    pass


class ToTensor(_Unusable):
    pass


class Lambda(_Unusable):
    pass
