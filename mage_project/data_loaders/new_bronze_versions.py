"""Notices new bronze versions: what bronze holds and what silver already reflects, per stream."""
if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@data_loader
def load_bronze_progress(*args, **kwargs) -> dict:
    lake = settings(kwargs)
    return {"lake": lake.lake, **ridelake.bronze_progress(lake.lake, **lake.progress_args())}


@test
def test_bronze_exists(output, *args) -> None:
    for stream in ("users", "rides"):
        assert output[stream]["bronze_version"] is not None, f"no bronze {stream} table under {output['lake']}"
