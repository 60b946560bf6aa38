"""MovieLens as an MDMT dataset, the way M3oE defines it on ML-1M.

Domains are user age groups (under 25, 25-34, 35 and over); tasks are
click = rating > 3 and like = rating > 4; sparse fields user, item, gender,
occupation, zip prefix (first character) and first genre; dense: age. Three
published layouts are read:

- `ml-100k`: RecBole atomic files ml-100k.inter/.user/.item (tab-separated,
  header ``name:type``), fetched by ``mdmt-nas data get ml-100k``;
- `ml-100k-original`: GroupLens u.data (tab), u.user and u.item (pipe, latin-1);
- `ml-1m`: GroupLens users.dat, movies.dat, ratings.dat (``::``, latin-1).

Every file is checked before use: a missing file, a wrong separator, a wrong
number of fields, a non-numeric rating or an unknown user/item is reported
with the file, the line and the expected format.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, encode_table
from mdmt_nas.data.fetch import ml100k_dir
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import DataError

#: Domain names (MLflow-safe) in id order.
AGE_GROUPS = ("under25", "25to34", "35plus")
#: ML-1M age codes -> domain (the M3oE grouping {1,18}, {25}, {35,45,50,56}).
ML1M_AGE_CODES = {1: "under25", 18: "under25", 25: "25to34", 35: "35plus", 45: "35plus", 50: "35plus", 56: "35plus"}
#: Genre order of ml-100k's u.genre (the flag columns of u.item).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


class MovieLensParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: directory holding the files (ml-100k: default the cache, see `mdmt-nas data get ml-100k`).
    dir: Path | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    #: click = rating > click_above; like = rating > like_above.
    click_above: float = 3
    like_above: float = 4


class ML1MParams(MovieLensParams):
    dir: Path  # type: ignore[assignment]
    #: M3oE's reference split: file order 80/10/10.
    split: SplitConfig = Field(default_factory=lambda: SplitConfig(kind="sequential"))


class ML100KOriginalParams(MovieLensParams):
    dir: Path  # type: ignore[assignment]


# ----------------------------------------------------------------------------- reading helpers


def _need(directory: Path, names: list[str], hint: str) -> list[Path]:
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise DataError(f"MovieLens files not found in {directory} (missing: {', '.join(missing)}); {hint}")
    return [directory / n for n in names]


def read_fields(path: Path, sep: str, names: list[str], fmt: str, encoding: str = "utf-8") -> pd.DataFrame:
    """A header-less delimited file with exactly len(names) fields per line, all read as text.

    `fmt` (e.g. ``UserID::Gender::Age::Occupation::Zip-code``) is shown in errors.
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; expected lines like {fmt}")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: cannot decode as {encoding} at byte {exc.start}; is this the original file?"
        ) from None
    lines = pd.Series(text.splitlines(), dtype="string")
    lines = lines[lines.str.strip() != ""]
    found = lines.str.count(re.escape(sep)).to_numpy() + 1  # fields per line, vectorised
    if found[0] != len(names):
        raise DataError(
            f"{path} line 1: expected {len(names)} fields separated by {sep!r} ({fmt}), found {found[0]}: {lines.iloc[0][:100]!r}"
        )
    bad = np.flatnonzero(found != len(names))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path} line {int(lines.index[i]) + 1}: {found[i]} fields, expected {len(names)} separated by {sep!r} ({fmt}); "
            f"{len(bad)} such line(s)"
        )
    body = "\n".join(lines.tolist()).replace(sep, "\x1f") if len(sep) > 1 else "\n".join(lines.tolist())
    return pd.read_csv(
        io.StringIO(body), sep="\x1f" if len(sep) > 1 else sep, header=None, names=names, dtype=str,
        quoting=csv.QUOTE_NONE, keep_default_na=False, engine="c",
    )  # fmt: skip


def read_atomic(path: Path, required: list[str]) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; columns renamed to `name`, read as text."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\r\n")
    fields = header.split("\t")
    if len(fields) == 1 and any(s in header for s in (",", ";", "|", "::")):
        raise DataError(f"{path}: the header {header[:80]!r} is not tab-separated; RecBole atomic files use tabs")
    if not all(":" in f for f in fields):
        raise DataError(
            f"{path}: not a RecBole atomic file; its header must list name:type fields separated by tabs "
            f"(e.g. 'user_id:token\\titem_id:token\\trating:float\\ttimestamp:float'), found {header[:100]!r}"
        )
    names = [f.split(":", 1)[0] for f in fields]
    missing = [r for r in required if r not in names]
    if missing:
        raise DataError(f"{path}: header lacks field(s) {', '.join(map(repr, missing))}; found {', '.join(fields)}")
    try:
        df = pd.read_csv(
            path, sep="\t", header=0, names=names, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: {str(exc).strip().splitlines()[-1]}; every line must have {len(names)} tab-separated fields"
        ) from None
    return df[required]


def numeric(df: pd.DataFrame, col: str, path: Path, header_lines: int = 0) -> pd.Series:
    """Column `col` as numbers; DataError naming the first bad value and its line."""
    out = pd.to_numeric(df[col].str.strip(), errors="coerce")
    bad = out.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path} line {i + 1 + header_lines}: {col} must be a number, found {df[col].iloc[i]!r}")
    return out


# ----------------------------------------------------------------------------- the common definition


def movielens_splits(
    ratings: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, p: MovieLensParams, where: str
) -> tuple[Splits, dict]:
    """Join ratings (user, item, rating, timestamp) with users (user, age, age_group, gender,
    occupation, zip) and items (item, genre), derive labels, split and encode."""
    for frame, key, what in ((users, "user", "users"), (items, "item", "items")):
        dup = frame[key].duplicated()
        if dup.any():
            raise DataError(f"{where}: {what} file lists {key} {frame[key][dup].iloc[0]!r} twice")
        unknown = ~ratings[key].isin(frame[key])
        if unknown.any():
            raise DataError(
                f"{where}: {int(unknown.sum())} ratings refer to {key}s missing from the {what} file "
                f"(e.g. {key} {ratings[key][unknown].iloc[0]!r}); are the files from the same release?"
            )
    df = ratings.merge(users, on="user", how="left").merge(items, on="item", how="left")
    df["click"] = (df["rating"] > p.click_above).astype(np.int8)
    df["like"] = (df["rating"] > p.like_above).astype(np.int8)
    df["zip_prefix"] = df["zip"].str.strip().str[:1].str.upper()
    mapping = ColumnMapping(
        domain="age_group",
        labels=["click", "like"],
        sparse=["user", "item", "gender", "occupation", "zip_prefix", "genre"],
        dense=["age"],
        domain_names={g: g for g in AGE_GROUPS},
        timestamp="timestamp",
    )
    info = {"interactions": len(df), "users": int(df["user"].nunique()), "items": int(df["item"].nunique())}
    return encode_table(df, mapping, p.split, where=where), info


def ml100k_age_group(age: pd.Series) -> pd.Series:
    return pd.Series(np.select([age < 25, age < 35], AGE_GROUPS[:2], AGE_GROUPS[2]), index=age.index)


# ----------------------------------------------------------------------------- the three layouts


class ML100KDataset(Dataset):
    """MovieLens-100K from RecBole atomic files; domains = age groups, tasks = click (rating>3), like (rating>4)."""

    name: ClassVar[str] = "ml-100k"
    Params: ClassVar[type[BaseModel]] = MovieLensParams

    def load(self) -> Splits:
        p: MovieLensParams = self.params  # type: ignore[assignment]
        d = Path(p.dir) if p.dir else ml100k_dir()
        inter_f, user_f, item_f = _need(
            d,
            ["ml-100k.inter", "ml-100k.user", "ml-100k.item"],
            "run `mdmt-nas data get ml-100k` (or set dir: to a folder holding them)",
        )
        inter = read_atomic(inter_f, ["user_id", "item_id", "rating", "timestamp"])
        ratings = pd.DataFrame(
            {
                "user": inter["user_id"],
                "item": inter["item_id"],
                "rating": numeric(inter, "rating", inter_f, 1),
                "timestamp": numeric(inter, "timestamp", inter_f, 1),
            }
        )
        u = read_atomic(user_f, ["user_id", "age", "gender", "occupation", "zip_code"])
        age = numeric(u, "age", user_f, 1)
        users = pd.DataFrame(
            {"user": u["user_id"], "age": age, "age_group": ml100k_age_group(age), "gender": u["gender"],
             "occupation": u["occupation"], "zip": u["zip_code"]}
        )  # fmt: skip
        it = read_atomic(item_f, ["item_id", "class"])
        genre = it["class"].str.strip().str.split(" ").str[0].replace("", "unknown")
        items = pd.DataFrame({"item": it["item_id"], "genre": genre})
        splits, self.info = movielens_splits(ratings, users, items, p, where=str(d))
        return splits


class ML100KOriginalDataset(Dataset):
    """MovieLens-100K in the GroupLens layout (u.data, u.user, u.item); same definition as ml-100k."""

    name: ClassVar[str] = "ml-100k-original"
    Params: ClassVar[type[BaseModel]] = ML100KOriginalParams

    def load(self) -> Splits:
        p: ML100KOriginalParams = self.params  # type: ignore[assignment]
        d = Path(p.dir)
        data_f, user_f, item_f = _need(
            d, ["u.data", "u.user", "u.item"], "download ml-100k.zip from grouplens.org and unzip it"
        )
        r = read_fields(
            data_f, "\t", ["user", "item", "rating", "timestamp"], "user id<TAB>item id<TAB>rating<TAB>timestamp"
        )
        ratings = r.assign(rating=numeric(r, "rating", data_f), timestamp=numeric(r, "timestamp", data_f))
        u = read_fields(
            user_f, "|", ["user", "age", "gender", "occupation", "zip"], "user id|age|gender|occupation|zip code"
        )
        u["age"] = numeric(u, "age", user_f)
        u["age_group"] = ml100k_age_group(u["age"])
        flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
        it = read_fields(
            item_f, "|", ["item", "title", "release", "video_release", "url", *flags],
            "movie id|title|release date|video release date|IMDb URL|19 genre flags (0/1)", encoding="latin-1",
        )  # fmt: skip
        fl = it[flags].apply(lambda c: pd.to_numeric(c, errors="coerce"))  # 19 columns, vectorised per column
        if fl.isna().any().any() or not fl.isin([0, 1]).all().all():
            row = int(np.flatnonzero((fl.isna() | ~fl.isin([0, 1])).any(axis=1).to_numpy())[0])
            raise DataError(
                f"{item_f} line {row + 1}: the last 19 fields must be genre flags 0/1; found {it[flags].iloc[row].tolist()}"
            )
        m = fl.to_numpy()
        genre = np.where(m.any(axis=1), np.asarray(ML100K_GENRES)[m.argmax(axis=1)], "unknown")
        items = pd.DataFrame({"item": it["item"], "genre": genre})
        splits, self.info = movielens_splits(
            ratings, u[["user", "age", "age_group", "gender", "occupation", "zip"]], items, p, str(d)
        )
        return splits


class ML1MDataset(Dataset):
    """MovieLens-1M (users.dat, movies.dat, ratings.dat); domains = age groups {1,18},{25},{35+}; tasks click, like."""

    name: ClassVar[str] = "ml-1m"
    Params: ClassVar[type[BaseModel]] = ML1MParams

    def load(self) -> Splits:
        p: ML1MParams = self.params  # type: ignore[assignment]
        d = Path(p.dir)
        users_f, movies_f, ratings_f = _need(
            d, ["users.dat", "movies.dat", "ratings.dat"], "download ml-1m.zip from grouplens.org and unzip it"
        )
        u = read_fields(
            users_f,
            "::",
            ["user", "gender", "age", "occupation", "zip"],
            "UserID::Gender::Age::Occupation::Zip-code",
            "latin-1",
        )
        u["age"] = numeric(u, "age", users_f)
        u["age_group"] = u["age"].map(ML1M_AGE_CODES)
        if u["age_group"].isna().any():
            bad = sorted(u["age"][u["age_group"].isna()].unique().tolist())
            raise DataError(f"{users_f}: unknown age code(s) {bad}; MovieLens-1M uses {sorted(ML1M_AGE_CODES)}")
        m = read_fields(movies_f, "::", ["item", "title", "genres"], "MovieID::Title::Genres", "latin-1")
        items = pd.DataFrame({"item": m["item"], "genre": m["genres"].str.split("|").str[0].replace("", "unknown")})
        r = read_fields(
            ratings_f, "::", ["user", "item", "rating", "timestamp"], "UserID::MovieID::Rating::Timestamp", "latin-1"
        )
        ratings = r.assign(rating=numeric(r, "rating", ratings_f), timestamp=numeric(r, "timestamp", ratings_f))
        splits, self.info = movielens_splits(
            ratings, u[["user", "age", "age_group", "gender", "occupation", "zip"]], items, p, str(d)
        )
        return splits
