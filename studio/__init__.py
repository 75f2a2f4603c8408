"""Diffusion Studio: a browser-based studio for diffusion image generation over Hugging Face diffusers."""

__version__ = "0.1.0"
