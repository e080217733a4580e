"""umlkit.analysis.frames: the column check the topic modules share."""

import pandas as pd
import pytest

from umlkit.analysis import frames


def test_require_columns_names_what_is_missing_and_what_is_there():
    table = pd.DataFrame({"id": ["a"], "dice": [0.5]})
    frames.require_columns(table, ["dice", "id"], "table")  # all present: no error
    with pytest.raises(
        ValueError, match=r"runs lacks the column\(s\) \['ACC'\]; it has \['id', 'dice'\]"
    ):
        frames.require_columns(table, ["dice", "ACC"], "runs")
