"""The options of ``gmg-infer`` as objects: :class:`InferOptions` (both paths) and :class:`VideoOptions`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gmg_deploy.cli.common import fields_of
from gmg_deploy.cli.forecaster_options import ForecasterOptions


@dataclass(frozen=True)
class VideoOptions:
    """The video-only options of ``gmg-infer`` (see :func:`gmg_deploy.cli.infer_video.video_options`)."""

    horizon: int | None = None
    video_out: str | None = None
    fit: str = "crop"
    denormalize: bool = False
    realtime: bool | None = None
    connect_timeout: float = 10.0
    quiet: bool = False
    reconnect: bool | None = None
    stall_timeout: float = 5.0
    max_reconnects: int | None = None
    serve: str | None = None

    @classmethod
    def from_click(cls, options: Mapping[str, Any]) -> "VideoOptions":
        return cls(**fields_of(cls, options))


@dataclass(frozen=True)
class InferOptions:
    """What ``gmg-infer`` was asked to do: ``forecaster`` opens the model, ``video`` holds the video-only options."""

    forecaster: ForecasterOptions
    inputs: tuple[str, ...]
    pre: int | None
    aft: int | None
    out: str | None
    gif: str | None
    metrics: bool
    csi_thresholds: str
    clip: bool
    as_json: bool
    force: bool
    video: VideoOptions

    @property
    def engine(self) -> ForecasterOptions:
        """The model-opening options (old name of :attr:`forecaster`)."""
        return self.forecaster

    @classmethod
    def from_click(cls, options: Mapping[str, Any]) -> "InferOptions":
        """The options from ``gmg-infer``'s click ``options`` (MODEL, --model or --engine: one model path)."""
        if "model" not in options and "engine" not in options:
            from gmg_deploy.cli.model_options import resolve_model

            options = dict(options)
            options["model"] = resolve_model(options, missing="give the model as the first argument (MODEL), or "
                                                             "with --model/--engine PATH")
        own = {k: v for k, v in fields_of(cls, options).items() if k not in ("forecaster", "video", "inputs")}
        return cls(forecaster=ForecasterOptions.from_click(options), video=VideoOptions.from_click(options),
                   inputs=tuple(options["input_path"]), **own)
