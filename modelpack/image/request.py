"""What either image builder is asked to build: one frozen value, made once by `api.build`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelpack.bundle.build import BundleResult
from modelpack.image.base import BaseImage
from modelpack.image.wheels import TargetPlatform


@dataclass(frozen=True)
class ImageRequest:
    bundle: BundleResult
    base: BaseImage
    user_pins: Mapping[str, str]  # the lock's pins for the image's platform
    target: TargetPlatform = field(default_factory=TargetPlatform)
    port: int = 8080
    env: Mapping[str, str] = field(default_factory=dict)
    system_packages: Sequence[str] = ()  # apt packages: the Docker builder only
    runtime: Mapping[str, object] = field(default_factory=dict)  # serving config keys from modelpack.yaml

    @property
    def handler(self) -> str:
        serving = self.bundle.record.serving
        return serving.handler if serving is not None else "onnx"
