"""Synthetic data (deterministic bouncing digits) and the locators of the demo model shipped in the package."""
