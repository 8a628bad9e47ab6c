"""Floor 3: frames in, for every command - one reader, one set of rules (``gmg-infer --input``, ``gmg-calibrate``/
``gmg-compare``/``gmg-build --verify`` ``--data``, the Polygraphy data loader).

Imports floors 0-2: ``video`` for video files, ``graph`` for a model's frame shape and normalisation.

:func:`read_frames` ``(path, frame_shape)`` -> float32 ``(N, T, C, H, W)``:

* ``.npy`` (memory-mapped; float32 is not copied) or ``.npz`` (one array, or the one named ``frames``);
  ``uint8`` pixels are scaled by 1/255, ``uint16`` by 1/65535, other float dtypes converted to float32, other
  dtypes refused. Float frames holding whole numbers up to 255 (8-bit pixels not scaled) are refused.
* ``(N, T, C, H, W)``, or 4-D: one sequence ``(T, C, H, W)`` when its last three axes are the model's frame
  ``(C, H, W)`` - and always when the model is not known (the last three axes are a frame, as in 5-D
  arrays) - else ``(N, T, H, W)``, one channel per frame, for a one-channel model.
* a folder of ``*.png`` frames (sorted by name): one sequence; 8-bit PNGs scaled by 1/255, 16-bit grey ones
  by 1/65535; sizes are checked from the headers before anything is decoded.
* a video file (``.mp4 .mkv .avi .mov .webm``): one sequence ``(1, T, C, H, W)`` of all its frames, fitted to
  the model's ``(C, H, W)`` as ``gmg-infer`` fits video (``--fit crop``, grey or RGB, [0, 1], then the model's
  ``test_mean``/``test_std`` when known); refused when the frames would exceed the memory budget.

Values must be finite; anything that would exceed the memory budget (:func:`memory_budget`:
``$GMG_MEMORY_BUDGET_MB`` or a quarter of the available memory) is refused; every error is one
:class:`~gmg_deploy.errors.InputError` line naming the file.
"""
from gmg_deploy.frames.budget import BUDGET_ENV, memory_budget
from gmg_deploy.frames.png import png_size
from gmg_deploy.frames.reader import count_sequences, read_frames

__all__ = ["read_frames", "count_sequences", "png_size", "memory_budget", "BUDGET_ENV"]
