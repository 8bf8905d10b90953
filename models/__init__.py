"""The ONNX models and their model cards, installed as `dispenser.models`.

Every model here has a card (`<name>.toml`) with its source, licence, sha256 and geometry;
tests check each file against its card. The scripts that reproduce the converted models
from their PyPI sources live beside them (see models/README.md).
"""
