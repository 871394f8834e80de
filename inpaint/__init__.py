"""inpaint: a bias-free Context Encoder and the tools to train it (no Hydra in here)."""
