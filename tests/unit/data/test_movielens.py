"""MovieLens loaders: the M3oE definition on three published layouts, and precise file errors."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch

from ml_files import write_ml1m, write_original_100k, write_recbole
from mdmt_nas.data import load_dataset, make_dataset
from mdmt_nas.data.fetch import ML100K_MEMBERS, cache_dir, fetch_ml100k
from mdmt_nas.errors import DataError, UserError


def _all(s, attr):
    return torch.cat([getattr(s.train, attr), getattr(s.valid, attr), getattr(s.test, attr)])


def _check_definition(s, n):
    assert s.schema.domain_names == ["under25", "25to34", "35plus"]
    assert s.schema.tasks == ["click", "like"]
    assert [f.name for f in s.schema.sparse] == ["user", "item", "gender", "occupation", "zip_prefix", "genre"]
    assert s.schema.dense == ["age"]
    assert len(s.train) + len(s.valid) + len(s.test) == n
    lab = _all(s, "labels")
    assert bool((lab[:, 1] <= lab[:, 0]).all())  # like (rating > 4) implies click (rating > 3)


def test_ml100k_recbole(tmp_path):
    d = write_recbole(tmp_path / "ml")
    ds = make_dataset("ml-100k", {"dir": str(d)})
    s = ds.load()
    _check_definition(s, 400)
    assert ds.info["users"] == 30 and ds.info["interactions"] == 400


def test_ml100k_labels_follow_ratings(tmp_path):
    d = tmp_path / "ml"
    write_recbole(d)
    s = load_dataset("ml-100k", {"dir": str(d), "split": {"kind": "sequential"}})
    ratings = [int(line.split("\t")[2]) for line in (d / "ml-100k.inter").read_text().splitlines()[1:]]
    lab = _all(s, "labels")
    assert lab[:, 0].tolist() == [float(r > 3) for r in ratings]
    assert lab[:, 1].tolist() == [float(r > 4) for r in ratings]


def test_ml100k_age_groups(tmp_path):
    d = write_recbole(tmp_path / "ml")
    s = load_dataset("ml-100k", {"dir": str(d), "split": {"kind": "sequential"}})
    inter = [line.split("\t") for line in (d / "ml-100k.inter").read_text().splitlines()[1:]]
    ages = {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in (d / "ml-100k.user").read_text().splitlines()[1:]}
    expect = [0 if ages[u] < 25 else 1 if ages[u] < 35 else 2 for u, *_ in inter]
    assert _all(s, "domain").tolist() == expect


def test_time_split(tmp_path):
    d = write_recbole(tmp_path / "ml")
    s = load_dataset("ml-100k", {"dir": str(d), "split": {"kind": "time"}})
    assert len(s.train) == 320


def test_ml100k_missing_files_tell_to_get(tmp_path):
    with pytest.raises(
        DataError, match=r"missing: ml-100k.inter, ml-100k.user, ml-100k.item\); run `mdmt-nas data get ml-100k`"
    ):
        load_dataset("ml-100k", {"dir": str(tmp_path)})


def test_ml100k_default_dir_is_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMT_NAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="cache/ml-100k"):
        load_dataset("ml-100k", {})
    write_recbole(tmp_path / "cache" / "ml-100k")
    assert len(load_dataset("ml-100k", {}).train) == 320


def test_ml100k_not_atomic_header(tmp_path):
    d = write_recbole(tmp_path / "ml")
    (d / "ml-100k.inter").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    with pytest.raises(DataError, match=r"not a RecBole atomic file; its header must list name:type"):
        load_dataset("ml-100k", {"dir": str(d)})


def test_ml100k_comma_separated(tmp_path):
    d = write_recbole(tmp_path / "ml")
    (d / "ml-100k.user").write_text(
        "user_id:token,age:token,gender:token,occupation:token,zip_code:token\n1,24,M,x,85711\n"
    )
    with pytest.raises(DataError, match=r"ml-100k.user: the header .* is not tab-separated"):
        load_dataset("ml-100k", {"dir": str(d)})


def test_ml100k_missing_field(tmp_path):
    d = write_recbole(tmp_path / "ml")
    text = (d / "ml-100k.inter").read_text().replace("rating:float", "score:float")
    (d / "ml-100k.inter").write_text(text)
    with pytest.raises(
        DataError,
        match=r"ml-100k.inter: header lacks field\(s\) 'rating'; found user_id:token, item_id:token, score:float",
    ):
        load_dataset("ml-100k", {"dir": str(d)})


def test_ml100k_bad_rating_value(tmp_path):
    d = write_recbole(tmp_path / "ml")
    lines = (d / "ml-100k.inter").read_text().splitlines()
    lines[3] = "1\t2\tfive\t881250949"
    (d / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ml-100k.inter line 4: rating must be a number, found 'five'"):
        load_dataset("ml-100k", {"dir": str(d)})


def test_ml100k_unknown_user(tmp_path):
    d = write_recbole(tmp_path / "ml")
    with open(d / "ml-100k.inter", "a") as fh:
        fh.write("999\t1\t4\t881250949\n")
    with pytest.raises(DataError, match=r"1 ratings refer to users missing from the users file \(e.g. user '999'\)"):
        load_dataset("ml-100k", {"dir": str(d)})


# ----------------------------------------------------------------------------- GroupLens ml-100k


def test_ml100k_original(tmp_path):
    d = write_original_100k(tmp_path / "ml")
    s = load_dataset("ml-100k-original", {"dir": str(d)})
    _check_definition(s, 400)


def test_ml100k_original_same_as_recbole(tmp_path):
    a = load_dataset("ml-100k-original", {"dir": str(write_original_100k(tmp_path / "a"))})
    b = load_dataset("ml-100k", {"dir": str(write_recbole(tmp_path / "b"))})
    assert torch.equal(a.train.labels, b.train.labels) and torch.equal(a.train.domain, b.train.domain)
    assert torch.equal(a.train.sparse[:, :2], b.train.sparse[:, :2])


def test_ml100k_original_wrong_separator(tmp_path):
    d = write_original_100k(tmp_path / "ml")
    (d / "u.user").write_text("1,24,M,technician,85711\n")
    with pytest.raises(
        DataError,
        match=r"u.user line 1: expected 5 fields separated by '\|' \(user id\|age\|gender\|occupation\|zip code\), found 1",
    ):
        load_dataset("ml-100k-original", {"dir": str(d)})


def test_ml100k_original_bad_genre_flags(tmp_path):
    d = write_original_100k(tmp_path / "ml")
    lines = (d / "u.item").read_bytes().decode("latin-1").splitlines()
    lines[2] = lines[2].rsplit("|", 1)[0] + "|yes"
    (d / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"u.item line 3: the last 19 fields must be genre flags 0/1"):
        load_dataset("ml-100k-original", {"dir": str(d)})


def test_ml100k_original_extra_field(tmp_path):
    d = write_original_100k(tmp_path / "ml")
    with open(d / "u.data", "a") as fh:
        fh.write("1\t2\t3\t4\t5\n")
    with pytest.raises(DataError, match=r"u.data line 401: 5 fields, expected 4 separated by '\\t'"):
        load_dataset("ml-100k-original", {"dir": str(d)})


def test_ml100k_original_short_line(tmp_path):
    d = write_original_100k(tmp_path / "ml")
    with open(d / "u.data", "a") as fh:
        fh.write("1\t2\t3\n")
    with pytest.raises(
        DataError,
        match=r"u.data line 401: 3 fields, expected 4 separated by '\\t' \(user id<TAB>item id<TAB>rating<TAB>timestamp\); 1 such line",
    ):
        load_dataset("ml-100k-original", {"dir": str(d)})


# ----------------------------------------------------------------------------- ml-1m


def test_ml1m(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    ds = make_dataset("ml-1m", {"dir": str(d)})
    s = ds.load()
    _check_definition(s, 400)
    assert ds.params.split.kind == "sequential"  # M3oE's reference split
    codes = {int(ln.split("::")[0]): int(ln.split("::")[2]) for ln in (d / "users.dat").read_text().splitlines()}
    users = [int(ln.split("::")[0]) for ln in (d / "ratings.dat").read_text().splitlines()]
    group = {1: 0, 18: 0, 25: 1, 35: 2, 45: 2, 50: 2, 56: 2}
    assert _all(s, "domain").tolist() == [group[codes[u]] for u in users]


def test_ml1m_tab_instead_of_double_colon(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    (d / "ratings.dat").write_text("1\t1193\t5\t978300760\n")
    with pytest.raises(
        DataError,
        match=r"ratings.dat line 1: expected 4 fields separated by '::' \(UserID::MovieID::Rating::Timestamp\), found 1",
    ):
        load_dataset("ml-1m", {"dir": str(d)})


def test_ml1m_unknown_age_code(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    text = (d / "users.dat").read_text().replace("::M::18::", "::M::17::")
    (d / "users.dat").write_text(text)
    with pytest.raises(
        DataError, match=r"users.dat: unknown age code\(s\) \[17\]; MovieLens-1M uses \[1, 18, 25, 35, 45, 50, 56\]"
    ):
        load_dataset("ml-1m", {"dir": str(d)})


def test_ml1m_missing_movie(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    lines = (d / "movies.dat").read_bytes().decode("latin-1").splitlines()[1:]
    (d / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"ratings refer to items missing from the items file \(e.g. item '1'\)"):
        load_dataset("ml-1m", {"dir": str(d)})


def test_ml1m_missing_file(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    (d / "movies.dat").unlink()
    with pytest.raises(DataError, match=r"missing: movies.dat\); download ml-1m.zip"):
        load_dataset("ml-1m", {"dir": str(d)})


def test_ml1m_dir_required():
    from mdmt_nas.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dataset.params.dir: required parameter is missing"):
        load_dataset("ml-1m", {})


# ----------------------------------------------------------------------------- fetching (no network)


def _fake_download(tmp_wheel_contents):
    def download(req, dest: Path):
        assert req == "recbole==1.2.1"
        with zipfile.ZipFile(dest / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
            for name, text in tmp_wheel_contents.items():
                zf.writestr(name, text)
            zf.writestr("recbole/__init__.py", "")
        return CompletedProcess([], 0, "", "")

    return download


def test_fetch_extracts_only_three_files_and_deletes_wheel(tmp_path):
    src = write_recbole(tmp_path / "src")
    contents = {m: (src / Path(m).name).read_text() for m in ML100K_MEMBERS}
    out = fetch_ml100k(tmp_path / "cache", downloader=_fake_download(contents))
    assert sorted(p.name for p in out.iterdir()) == ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    assert not list((tmp_path / "cache").rglob("*.whl"))
    assert len(load_dataset("ml-100k", {"dir": str(out)}).train) == 320


def test_fetch_failure_is_a_user_error(tmp_path):
    def failing(req, dest):
        return CompletedProcess(
            [], 1, "", "ERROR: Could not find a version that satisfies the requirement recbole==1.2.1"
        )

    with pytest.raises(UserError, match=r"(?s)could not download recbole==1.2.1.*Could not find a version"):
        fetch_ml100k(tmp_path, downloader=failing)


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMT_NAS_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("MDMT_NAS_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "mdmt-nas"


# ----------------------------------------------------------------------------- the real files, when cached

_REAL = Path(os.environ.get("MDMT_NAS_CACHE") or Path.home() / ".cache" / "mdmt-nas") / "ml-100k"


@pytest.mark.skipif(not (_REAL / "ml-100k.inter").exists(), reason="run `mdmt-nas data get ml-100k` to enable")
def test_real_ml100k_numbers():
    ds = make_dataset("ml-100k", {})
    s = ds.load()
    assert ds.info["interactions"] == 100_000 and ds.info["users"] == 943
    assert s.schema.num_domains == 3 and s.schema.num_tasks == 2
    assert (len(s.train), len(s.valid), len(s.test)) == (80_000, 10_000, 10_000)
    counts = torch.bincount(_all(s, "domain"), minlength=3).tolist()
    assert counts == [26_551, 35_444, 38_005]
