"""Fixtures of the strategies' tests: the MASSIVE fixture data, once a module."""

from __future__ import annotations

import pytest

from massive_fixture import write_massive_dir


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"))
