"""Applies the new bronze changes to silver users and rides (pending, tombstones, quarantine)."""
if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@transformer
def build_silver(progress: dict, *args, **kwargs) -> dict:
    lake = settings(kwargs)
    return ridelake.build_silver(lake.lake, **lake.silver_args())


@test
def test_silver_caught_up(output, *args) -> None:
    users_upto, rides_upto = output["users_versions"][1], output["rides_versions"][1]
    assert users_upto >= 0 and rides_upto >= 0, output
    assert output["noop"] or output["rows_read"] > 0 or output["released"] > 0, output
