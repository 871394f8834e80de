"""The paper's analyses as plain functions of (generator, images) -> arrays; no Hydra in here."""
