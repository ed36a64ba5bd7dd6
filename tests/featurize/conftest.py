"""Featurizer fixtures: models loaded once per test session; tiny drawn images."""
from __future__ import annotations

from pathlib import Path

import pytest
from feat_inputs import draw

from kdcrowd_core.featurize import image_model_available, text_model_available


@pytest.fixture(scope="session")
def text_model():
    reason = text_model_available()
    if reason:
        pytest.skip(reason)
    from kdcrowd_core.featurize import load_text_model
    return load_text_model("cpu")


@pytest.fixture(scope="session")
def image_model():
    reason = image_model_available()
    if reason:
        pytest.skip(reason)
    from kdcrowd_core.featurize import load_image_model
    return load_image_model("cpu")


@pytest.fixture
def shapes_dir(tmp_path: Path) -> Path:
    """A folder of 12 drawn images: disc0..disc5.jpg and square0..square5.jpg."""
    d = tmp_path / "shapes"
    d.mkdir()
    for k in range(6):
        (d / f"disc{k}.jpg").write_bytes(draw("disc", k))
        (d / f"square{k}.jpg").write_bytes(draw("square", 100 + k))
    return d
