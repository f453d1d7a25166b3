"""``pytorch_grad_cam.score_cam``."""

from ._wrap import compat_class

ScoreCAM = compat_class("scorecam", "ScoreCAM")
