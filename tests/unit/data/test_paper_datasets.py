"""KuaiRand, Ali-CCP and AliExpress loaders on tiny files in the published layouts, and their errors."""

from __future__ import annotations

import pandas as pd
import pytest

from paper_files import aliccp_frame, aliexpress_frame, write_aliccp_dir, write_aliexpress, write_kuairand
from mdmt_nas.data import load_dataset, make_dataset
from mdmt_nas.errors import ConfigError, DataError


def _n(s):
    return len(s.train) + len(s.valid) + len(s.test)


# ----------------------------------------------------------------------------- KuaiRand


def test_kuairand_default_tabs_and_tasks(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    ds = make_dataset("kuairand", {"dir": str(d)})
    s = ds.load()
    log = pd.read_csv(d / "log_standard_4_08_to_4_21_pure.csv")
    top = log.tab.value_counts().index[:4].tolist()
    assert top == [1, 0, 2, 4]
    assert s.schema.domain_names == ["tab1", "tab0", "tab2", "tab4"]  # share >= 2%, at least 3, at most 5
    assert s.schema.tasks == ["is_click", "is_like"]
    assert "user_id" in [f.name for f in s.schema.sparse] and s.schema.dense == ["video_duration_log"]
    assert ds.info["notes"] and "dropped" in ds.info["notes"][0]
    assert _n(s) == int(log.tab.isin(top).sum())


def test_kuairand_tab_choice_rule():
    from mdmt_nas.data.kuairand import KuaiRandParams, choose_tabs

    counts = pd.Series({7: 500, 1: 300, 2: 150, 3: 40, 4: 9, 5: 1})
    p = KuaiRandParams(dir=".")
    assert choose_tabs(counts, p) == [7, 1, 2, 3]
    assert choose_tabs(counts, p.model_copy(update={"min_tab_share": 0.2})) == [7, 1, 2]  # at least 3
    assert choose_tabs(counts, p.model_copy(update={"min_tab_share": 0.0})) == [7, 1, 2, 3, 4]  # at most 5


def test_kuairand_chosen_tabs_tasks_and_time_split(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    s = load_dataset(
        "kuairand",
        {"dir": str(d), "tabs": [2, 1], "tasks": ["is_click", "long_view", "is_follow"], "split": {"kind": "time"}},
    )
    assert s.schema.domain_names == ["tab2", "tab1"] and s.schema.num_tasks == 3


def test_kuairand_missing_log_column(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    f = d / "log_standard_4_08_to_4_21_pure.csv"
    pd.read_csv(f).drop(columns=["tab"]).to_csv(f, index=False)
    with pytest.raises(
        DataError,
        match=r"log_standard_4_08_to_4_21_pure.csv: column 'tab' not found; available columns: user_id, video_id",
    ):
        load_dataset("kuairand", {"dir": str(d)})


def test_kuairand_wrong_separator(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    f = d / "user_features_pure.csv"
    pd.read_csv(f).to_csv(f, index=False, sep="\t")
    with pytest.raises(
        DataError,
        match=r"user_features_pure.csv: the file has a single column .* seems to be separated by '\\t' \(tab' but was read with separator ','",
    ):
        load_dataset("kuairand", {"dir": str(d)})


def test_kuairand_unknown_video(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    f = d / "video_features_basic_pure.csv"
    v = pd.read_csv(f)
    v[v.video_id != 3].to_csv(f, index=False)
    with pytest.raises(DataError, match=r"log rows refer to video_ids missing from the video features file \(e.g. 3\)"):
        load_dataset("kuairand", {"dir": str(d)})


def test_kuairand_non_binary_task(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    f = d / "log_standard_4_08_to_4_21_pure.csv"
    log = pd.read_csv(f)
    log.loc[5, "is_like"] = 3
    log.to_csv(f, index=False)
    with pytest.raises(DataError, match=r"label column 'is_like' must be binary 0/1; found \['3'\] in 1 rows"):
        load_dataset("kuairand", {"dir": str(d)})


def test_kuairand_bad_params(tmp_path):
    d = write_kuairand(tmp_path / "kr")
    with pytest.raises(DataError, match=r"tasks \['play_time_ms'\] are not binary feedback columns"):
        load_dataset("kuairand", {"dir": str(d), "tasks": ["play_time_ms"]})
    with pytest.raises(DataError, match=r"tabs \[8\] do not occur in the logs"):
        load_dataset("kuairand", {"dir": str(d), "tabs": [8]})
    with pytest.raises(DataError, match=r"no video features file matching"):
        (d / "video_features_basic_pure.csv").unlink()
        load_dataset("kuairand", {"dir": str(d)})


# ----------------------------------------------------------------------------- Ali-CCP


def test_aliccp_directory_uses_published_splits(tmp_path):
    d = write_aliccp_dir(tmp_path / "ccp")
    s = load_dataset("aliccp", {"path": str(d)})
    assert (len(s.train), len(s.valid), len(s.test)) == (500, 100, 100)
    assert s.schema.domain_names == ["scenario1", "scenario2", "scenario3"]
    assert s.schema.tasks == ["click", "purchase"]
    names = [f.name for f in s.schema.sparse]
    assert "301" not in names and "101" in names and "109_14" in names
    assert s.schema.dense == ["D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"]


def test_aliccp_single_file_random_split(tmp_path):
    f = tmp_path / "ccp.csv"
    aliccp_frame(500).to_csv(f, index=False)
    s = load_dataset("aliccp", {"path": str(f), "max_rows": 300})
    assert (len(s.train), len(s.valid), len(s.test)) == (240, 30, 30)


def test_aliccp_missing_domain_field(tmp_path):
    f = tmp_path / "ccp.csv"
    aliccp_frame().drop(columns=["301"]).to_csv(f, index=False)
    with pytest.raises(DataError, match=r"column '301' not found; available columns: click, purchase, 101"):
        load_dataset("aliccp", {"path": str(f)})


def test_aliccp_unknown_scenario(tmp_path):
    f = tmp_path / "ccp.csv"
    df = aliccp_frame()
    df.loc[7, "301"] = 4
    df.to_csv(f, index=False)
    with pytest.raises(
        DataError, match=r"domain column '301' has values not listed in domain_names: \['4'\] \(1 rows\)"
    ):
        load_dataset("aliccp", {"path": str(f)})


def test_aliccp_raw_format_rejected(tmp_path):
    f = tmp_path / "sample_skeleton_train.csv"
    f.write_text("sample_id,click,purchase,md5,feature_num,301,feature_list\n1,0,0,abc,2,1,x\n")
    with pytest.raises(
        DataError,
        match=r"unexpected column\(s\) \['sample_id', 'md5', 'feature_num', 'feature_list'\]; a preprocessed Ali-CCP CSV",
    ):
        load_dataset("aliccp", {"path": str(f)})


def test_aliccp_missing_val_file(tmp_path):
    d = write_aliccp_dir(tmp_path / "ccp")
    (d / "ali_ccp_val.csv").unlink()
    with pytest.raises(DataError, match=r"no valid file matching '\*val\*.csv'"):
        load_dataset("aliccp", {"path": str(d)})


# ----------------------------------------------------------------------------- AliExpress


def test_aliexpress_country_folders(tmp_path):
    d = write_aliexpress(tmp_path / "ae")
    ds = make_dataset("aliexpress", {"dir": str(d)})
    s = ds.load()
    assert s.schema.domain_names == ["ES", "FR", "NL"]
    assert s.schema.tasks == ["click", "conversion"]
    assert s.schema.num_sparse == 16 and s.schema.num_dense == 63
    assert len(s.test) == 180 and len(s.train) + len(s.valid) == 720 and 30 < len(s.valid) < 120


def test_aliexpress_single_files_and_country_choice(tmp_path):
    d = tmp_path / "ae"
    d.mkdir()
    aliexpress_frame(200, 1).to_csv(d / "AliExpress_US.csv", index=False)
    aliexpress_frame(200, 2).to_csv(d / "RU.csv", index=False)
    s = load_dataset("aliexpress", {"dir": str(d), "countries": ["RU"]})
    assert s.schema.domain_names == ["RU"] and _n(s) == 200
    s = load_dataset("aliexpress", {"dir": str(d), "split": {"kind": "hash", "column": "search_id"}})
    assert s.schema.domain_names == ["US", "RU"]


def test_aliexpress_missing_numerical_column(tmp_path):
    d = write_aliexpress(tmp_path / "ae", countries=("NL",))
    f = d / "AliExpress_NL" / "test.csv"
    pd.read_csv(f).drop(columns=["numerical_63"]).to_csv(f, index=False)
    with pytest.raises(
        DataError, match=r"AliExpress_NL/test.csv: column 'numerical_63' not found; available columns: search_id"
    ):
        load_dataset("aliexpress", {"dir": str(d)})


def test_aliexpress_semicolon_file(tmp_path):
    d = write_aliexpress(tmp_path / "ae", countries=("NL",))
    f = d / "AliExpress_NL" / "train.csv"
    pd.read_csv(f).to_csv(f, index=False, sep=";")
    with pytest.raises(DataError, match=r"seems to be separated by ';' but was read with separator ','"):
        load_dataset("aliexpress", {"dir": str(d)})


def test_aliexpress_folder_without_test(tmp_path):
    d = write_aliexpress(tmp_path / "ae", countries=("NL", "ES"))
    (d / "AliExpress_ES" / "test.csv").unlink()
    with pytest.raises(
        DataError, match=r"AliExpress_ES: found only train.csv; a country folder needs train.csv and test.csv"
    ):
        load_dataset("aliexpress", {"dir": str(d)})


def test_aliexpress_unknown_country(tmp_path):
    d = write_aliexpress(tmp_path / "ae", countries=("NL",))
    with pytest.raises(DataError, match=r"countries \['XX'\] not found; available: \['NL'\]"):
        load_dataset("aliexpress", {"dir": str(d), "countries": ["XX"]})


def test_aliexpress_nan_in_numerical(tmp_path):
    d = write_aliexpress(tmp_path / "ae", countries=("NL",))
    f = d / "AliExpress_NL" / "train.csv"
    df = pd.read_csv(f)
    df.loc[[1, 2], "numerical_5"] = None
    df.to_csv(f, index=False)
    with pytest.raises(DataError, match=r"dense column 'numerical_5' has 2 missing or infinite values .*fill them"):
        load_dataset("aliexpress", {"dir": str(d)})


def test_paths_are_required():
    for name, field in (("kuairand", "dir"), ("aliccp", "path"), ("aliexpress", "dir")):
        with pytest.raises(ConfigError, match=rf"dataset.params.{field}: required parameter is missing"):
            load_dataset(name, {})
