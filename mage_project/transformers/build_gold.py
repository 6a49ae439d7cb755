"""Recomputes gold for the silver days that changed."""
if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@transformer
def build_gold(silver: dict, *args, **kwargs) -> dict:
    lake = settings(kwargs)
    return ridelake.build_gold(lake.lake, **lake.gold_args())


@test
def test_gold_reflects_silver(output, *args) -> None:
    before, now = output["silver_versions"]
    assert output["noop"] or output["days_recomputed"] > 0, output
    assert before is None or before <= now, output
