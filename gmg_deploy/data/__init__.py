"""Synthetic data (deterministic bouncing digits) and the demo model's locators; needs ``model`` only.

Used by the commands and tests, not by the stages."""
