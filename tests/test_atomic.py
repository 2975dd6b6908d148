import os
import stat

import pandas as pd
import pytest

from xlcl.atomic import atomic_write, atomic_write_bytes


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "scores.parquet"
    pd.DataFrame({"f1": [0.5]}).to_parquet(path, index=False)

    def killed_while_writing(temporary):
        temporary.write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, killed_while_writing)
    assert pd.read_parquet(path)["f1"].tolist() == [0.5]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


def test_a_writer_writes_at_the_temporary_path_and_the_file_replaces_the_old_one(tmp_path):
    path = tmp_path / "runs" / "scores.parquet"  # the directory is created
    frame = pd.DataFrame({"f1": [0.25, 0.75]})
    atomic_write(path, lambda temporary: frame.to_parquet(temporary, index=False))
    atomic_write_bytes(path.with_name("DONE"), b"")
    assert pd.read_parquet(path).equals(frame)
    assert sorted(p.name for p in path.parent.iterdir()) == ["DONE", "scores.parquet"]


def test_the_new_file_has_the_permissions_of_a_newly_created_one(tmp_path):
    umask = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "manifest.json", b"{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "manifest.json").stat().st_mode) == 0o640
