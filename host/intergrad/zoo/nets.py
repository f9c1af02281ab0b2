"""The network zoo: layer-exact definitions of well-known CNNs.

Each builder mirrors a reference implementation (named in ``source``) closely enough that its
parameter count matches the published figure; ``tests/test_zoo.py`` checks parameter and
multiply-accumulate totals against the published numbers.  BatchNorm layers count their
two affine parameters per channel (as the reference implementations do).
"""
from __future__ import annotations

from .network import Layer, Network

Shape = tuple  # (C, H, W)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Builder:
    """Appends layers while tracking tensor shapes (C, H, W)."""

    def __init__(self, name: str, c: int, h: int, w: int, source: str = ""):
        self.name, self.source = name, source
        self.input = (c, h, w)
        self.layers: list[Layer] = []
        self._n: dict[str, int] = {}

    def _name(self, kind: str, name: str | None) -> str:
        if name:
            return name
        self._n[kind] = self._n.get(kind, 0) + 1
        return f"{kind}{self._n[kind]}"

    @staticmethod
    def _out(h, w, k, s, p):
        kh, kw = _pair(k)
        ph, pw = _pair(p)
        ho, wo = (h + 2 * ph - kh) // s + 1, (w + 2 * pw - kw) // s + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"window {kh}x{kw}/s{s} does not fit a {h}x{w} input")
        return ho, wo

    def conv(self, x: Shape, cout: int, k=1, s: int = 1, p=0, g: int = 1, *, bias: bool = False,
             bn: bool = True, act: bool = True, name: str | None = None) -> Shape:
        c, h, w = x
        kh, kw = _pair(k)
        ho, wo = self._out(h, w, k, s, p)
        name = self._name("conv", name)
        self.layers.append(Layer(name, "conv", c, h, w, cout, ho, wo, kh, kw, s, g, bias))
        y = (cout, ho, wo)
        if bn:
            self.bn(y, act=act, name=name + ".bn")
        elif act:
            self.act(y, name=name + ".act")
        return y

    def fc(self, x: Shape, cout: int, *, bias: bool = True, act: bool = False,
           name: str | None = None) -> Shape:
        n = x[0] * x[1] * x[2]
        name = self._name("fc", name)
        self.layers.append(Layer(name, "fc", n, 1, 1, cout, 1, 1, bias=bias))
        y = (cout, 1, 1)
        if act:
            self.act(y, name=name + ".act")
        return y

    def bn(self, x: Shape, act: bool = True, name: str | None = None) -> Shape:
        c, h, w = x
        name = self._name("bn", name)
        self.layers.append(Layer(name, "bn", c, h, w, c, h, w))
        if act:
            self.act(x, name=name + ".act")
        return x

    def act(self, x: Shape, name: str | None = None) -> Shape:
        c, h, w = x
        self.layers.append(Layer(self._name("act", name), "act", c, h, w, c, h, w))
        return x

    def pool(self, x: Shape, k=2, s: int | None = None, p=0, avg: bool = False,
             name: str | None = None) -> Shape:
        c, h, w = x
        s = s or _pair(k)[0]
        ho, wo = self._out(h, w, k, s, p)
        kh, kw = _pair(k)
        kind = "avgpool" if avg else "pool"
        self.layers.append(Layer(self._name(kind, name), kind, c, h, w, c, ho, wo, kh, kw, s))
        return (c, ho, wo)

    def gap(self, x: Shape) -> Shape:
        """Global average pooling."""
        return self.pool(x, (x[1], x[2]), 1, avg=True, name=self._name("gap", None))

    def add(self, x: Shape, name: str | None = None) -> Shape:
        c, h, w = x
        self.layers.append(Layer(self._name("add", name), "add", c, h, w, c, h, w))
        return x

    @staticmethod
    def concat(*xs: Shape) -> Shape:
        if len({(h, w) for _, h, w in xs}) != 1:
            raise ValueError(f"concat of mismatched spatial sizes {xs}")
        return (sum(c for c, _, _ in xs), xs[0][1], xs[0][2])

    def build(self) -> Network:
        return Network(self.name, self.layers, self.input, self.source)


# --------------------------------------------------------------------------- small nets

def lenet5() -> Network:
    b = Builder("lenet5", 1, 32, 32, "LeCun et al. 1998, with a fully connected C3 (the usual "
                "modern reading); tanh/ReLU counted as host activations")
    x = b.conv((1, 32, 32), 6, 5, bias=True, bn=False)
    x = b.pool(x, 2, avg=True)
    x = b.conv(x, 16, 5, bias=True, bn=False)
    x = b.pool(x, 2, avg=True)
    x = b.fc(x, 120, act=True)
    x = b.fc(x, 84, act=True)
    b.fc(x, 10)
    return b.build()


def digits_cnn(channels: int = 8) -> Network:
    b = Builder("digits_cnn", 1, 8, 8, "intergrad.nn.DigitsCNN (scikit-learn 8x8 digits): "
                "conv3x3(1->8, pad 1) -> ReLU -> maxpool2 -> FC(128 -> 10)")
    x = b.conv((1, 8, 8), channels, 3, p=1, bias=True, bn=False, name="conv1")
    x = b.pool(x, 2)
    b.fc(x, 10, name="fc")
    return b.build()


# --------------------------------------------------------------------------- ImageNet nets

def _classifier(b: Builder, x: Shape) -> Network:
    """AlexNet / VGG head: two 4096-wide ReLU FC layers and the 1000-way FC."""
    x = b.fc(x, 4096, act=True)
    x = b.fc(x, 4096, act=True)
    b.fc(x, 1000)
    return b.build()


def alexnet() -> Network:
    b = Builder("alexnet", 3, 224, 224, "torchvision.models.alexnet (one-tower variant, "
                "Krizhevsky 2014 'One weird trick')")
    x = b.conv((3, 224, 224), 64, 11, 4, 2, bias=True, bn=False)
    x = b.pool(x, 3, 2)
    x = b.conv(x, 192, 5, p=2, bias=True, bn=False)
    x = b.pool(x, 3, 2)
    x = b.conv(x, 384, 3, p=1, bias=True, bn=False)
    x = b.conv(x, 256, 3, p=1, bias=True, bn=False)
    x = b.conv(x, 256, 3, p=1, bias=True, bn=False)
    x = b.pool(x, 3, 2)
    return _classifier(b, x)


def vgg16() -> Network:
    b = Builder("vgg16", 3, 224, 224, "Simonyan & Zisserman 2015, configuration D "
                "(torchvision.models.vgg16)")
    x = (3, 224, 224)
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        x = b.pool(x, 2) if v == "M" else b.conv(x, v, 3, p=1, bias=True, bn=False)
    return _classifier(b, x)


def resnet50() -> Network:
    b = Builder("resnet50", 3, 224, 224, "He et al. 2016, torchvision.models.resnet50 (v1.5: "
                "stride on the 3x3 convolution)")
    x = b.conv((3, 224, 224), 64, 7, 2, 3, name="conv1")
    x = b.pool(x, 3, 2, 1)
    for stage, (w, n, s) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        for i in range(n):
            pre = f"layer{stage}.{i}"
            st = s if i == 0 else 1
            y = b.conv(x, w, 1, name=pre + ".conv1")
            y = b.conv(y, w, 3, st, 1, name=pre + ".conv2")
            y = b.conv(y, 4 * w, 1, act=False, name=pre + ".conv3")
            if i == 0:
                b.conv(x, 4 * w, 1, st, act=False, name=pre + ".downsample")
            x = b.add(y, name=pre + ".add")
            b.act(x, name=pre + ".relu")
    x = b.gap(x)
    b.fc(x, 1000, name="fc")
    return b.build()


def mobilenet_v2() -> Network:
    b = Builder("mobilenet_v2", 3, 224, 224, "Sandler et al. 2018, "
                "torchvision.models.mobilenet_v2 (width 1.0)")
    x = b.conv((3, 224, 224), 32, 3, 2, 1, name="features.0")
    blk = 0
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            blk += 1
            pre = f"features.{blk}"
            st = s if i == 0 else 1
            hid = x[0] * t
            y = x if t == 1 else b.conv(x, hid, 1, name=pre + ".expand")
            y = b.conv(y, hid, 3, st, 1, g=hid, name=pre + ".dw")
            y = b.conv(y, c, 1, act=False, name=pre + ".project")
            if st == 1 and x[0] == c:
                y = b.add(y, name=pre + ".add")
            x = y
    x = b.conv(x, 1280, 1, name="features.18")
    x = b.gap(x)
    b.fc(x, 1000, name="classifier")
    return b.build()


def densenet264(growth: int = 32, blocks=(6, 12, 64, 48)) -> Network:
    b = Builder("densenet264", 3, 224, 224, "Huang et al. 2017, DenseNet-BC-264 (k=32), "
                "laid out as torchvision's DenseNet (pre-activation BN-ReLU-conv)")
    x = b.conv((3, 224, 224), 2 * growth, 7, 2, 3, name="conv0")
    x = b.pool(x, 3, 2, 1)
    for bi, n in enumerate(blocks, 1):
        for li in range(n):
            pre = f"block{bi}.layer{li + 1}"
            y = b.bn(x, name=pre + ".norm1")
            y = b.conv(y, 4 * growth, 1, bn=False, act=False, name=pre + ".conv1")
            y = b.bn(y, name=pre + ".norm2")
            y = b.conv(y, growth, 3, p=1, bn=False, act=False, name=pre + ".conv2")
            x = b.concat(x, y)
        if bi < len(blocks):
            pre = f"transition{bi}"
            y = b.bn(x, name=pre + ".norm")
            y = b.conv(y, x[0] // 2, 1, bn=False, act=False, name=pre + ".conv")
            x = b.pool(y, 2, avg=True, name=pre + ".pool")
    x = b.bn(x, name="norm5")
    x = b.gap(x)
    b.fc(x, 1000, name="classifier")
    return b.build()


def inception_v4() -> Network:
    b = Builder("inception_v4", 3, 299, 299, "Szegedy et al. 2017 (Inception-v4, Fig. 3-9), "
                "laid out as timm's inception_v4 (conv + BN + ReLU units)")
    cv = b.conv
    x = cv((3, 299, 299), 32, 3, 2)
    x = cv(x, 32, 3)
    x = cv(x, 64, 3, p=1)
    x = b.concat(b.pool(x, 3, 2), cv(x, 96, 3, 2))                       # mixed_3a
    x = b.concat(cv(cv(x, 64, 1), 96, 3),                                 # mixed_4a
                 cv(cv(cv(cv(x, 64, 1), 64, (1, 7), p=(0, 3)), 64, (7, 1), p=(3, 0)), 96, 3))
    x = b.concat(cv(x, 192, 3, 2), b.pool(x, 3, 2))                       # mixed_5a
    for _ in range(4):                                                    # inception A
        x = b.concat(cv(x, 96, 1),
                     cv(cv(x, 64, 1), 96, 3, p=1),
                     cv(cv(cv(x, 64, 1), 96, 3, p=1), 96, 3, p=1),
                     cv(b.pool(x, 3, 1, 1, avg=True), 96, 1))
    x = b.concat(cv(x, 384, 3, 2),                                        # reduction A
                 cv(cv(cv(x, 192, 1), 224, 3, p=1), 256, 3, 2),
                 b.pool(x, 3, 2))
    for _ in range(7):                                                    # inception B
        b1 = cv(cv(cv(x, 192, 1), 224, (1, 7), p=(0, 3)), 256, (7, 1), p=(3, 0))
        b2 = cv(x, 192, 1)
        for co, k, p in ((192, (7, 1), (3, 0)), (224, (1, 7), (0, 3)), (224, (7, 1), (3, 0)),
                         (256, (1, 7), (0, 3))):
            b2 = cv(b2, co, k, p=p)
        x = b.concat(cv(x, 384, 1), b1, b2, cv(b.pool(x, 3, 1, 1, avg=True), 128, 1))
    x = b.concat(cv(cv(x, 192, 1), 192, 3, 2),                            # reduction B
                 cv(cv(cv(cv(x, 256, 1), 256, (1, 7), p=(0, 3)), 320, (7, 1), p=(3, 0)),
                    320, 3, 2),
                 b.pool(x, 3, 2))
    for _ in range(3):                                                    # inception C
        b1 = cv(x, 384, 1)
        b2 = cv(cv(cv(x, 384, 1), 448, (3, 1), p=(1, 0)), 512, (1, 3), p=(0, 1))
        x = b.concat(cv(x, 256, 1),
                     cv(b1, 256, (1, 3), p=(0, 1)), cv(b1, 256, (3, 1), p=(1, 0)),
                     cv(b2, 256, (1, 3), p=(0, 1)), cv(b2, 256, (3, 1), p=(1, 0)),
                     cv(b.pool(x, 3, 1, 1, avg=True), 256, 1))
    x = b.gap(x)
    b.fc(x, 1000, name="last_linear")
    return b.build()


NETWORKS = {
    "lenet5": lenet5,
    "digits_cnn": digits_cnn,
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "inception_v4": inception_v4,
    "densenet264": densenet264,
}
