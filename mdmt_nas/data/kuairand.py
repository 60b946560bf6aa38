"""KuaiRand (Kuaishou short-video logs): domains from the `tab` a video was shown in.

Files, as published (KuaiRand-Pure / -1K / -27K): interaction logs
``log_standard_*.csv`` (optionally ``log_random_*.csv``), ``user_features*.csv``
and ``video_features_basic*.csv``. A row is one exposure; tasks are any of
its binary feedback columns (default is_click and is_like). Domains are the
most frequent tabs (3 to 5 by default, or the `tabs` you list); rows from
other tabs are dropped and counted in `info["notes"]`. Post-exposure
columns (play_time_ms, long_view, ...) are never used as features.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, encode_table
from mdmt_nas.data.split import SplitConfig
from mdmt_nas.data.tabular import read_csv_columns
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import DataError

LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
    "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
    "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip
USER_COLUMNS = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)  # fmt: skip
VIDEO_COLUMNS = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
    "server_width", "server_height", "music_id", "music_type", "tag",
)  # fmt: skip
BINARY_FEEDBACK = (
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "is_profile_enter",
)

#: Features (all categorical except video_duration_log).
USER_SPARSE = [c for c in USER_COLUMNS if c != "user_id"]
VIDEO_SPARSE = ["author_id", "video_type", "upload_type", "visible_status", "music_type", "tag"]


class KuaiRandParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path
    #: glob patterns (in `dir`) of the interaction logs, concatenated in sorted order.
    log_files: list[str] = Field(default_factory=lambda: ["log_standard_*.csv"])
    user_features: str = "user_features*.csv"
    video_features: str = "video_features_basic*.csv"
    #: tab values to keep as domains (in this order); default: the most frequent ones (see below).
    tabs: list[int] | None = None
    #: default tab choice: most frequent tabs holding >= min_tab_share of rows, at least min_tabs, at most max_tabs.
    min_tabs: int = Field(3, ge=1)
    max_tabs: int = Field(5, ge=1)
    min_tab_share: float = Field(0.02, ge=0, le=1)
    tasks: list[str] = Field(default_factory=lambda: ["is_click", "is_like"], min_length=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    #: read at most this many rows of each log file (quick experiments).
    max_rows: int | None = Field(default=None, ge=1)


def _one(d: Path, pattern: str, what: str) -> Path:
    found = sorted(d.glob(pattern))
    if not found:
        raise DataError(
            f"{d}: no {what} file matching {pattern!r}; KuaiRand ships it as e.g. {pattern.replace('*', '_pure')}"
        )
    return found[0]


def _py(x: object) -> object:
    """A numpy scalar as the plain Python value (for readable messages)."""
    return x.item() if hasattr(x, "item") else x


def choose_tabs(counts: pd.Series, p: KuaiRandParams) -> list[int]:
    """The tabs kept as domains: `p.tabs`, or the most frequent ones by the share rule."""
    if p.tabs is not None:
        unknown = [t for t in p.tabs if t not in counts.index]
        if unknown:
            raise DataError(
                f"KuaiRand: tabs {unknown} do not occur in the logs; tabs present (rows): {counts.to_dict()}"
            )
        return list(p.tabs)
    share = counts / counts.sum()
    ranked = share.sort_values(ascending=False, kind="stable")
    keep = ranked[ranked >= p.min_tab_share].index.tolist()
    keep = ranked.index[: max(min(p.min_tabs, len(ranked)), min(len(keep), p.max_tabs))].tolist()
    return [int(t) for t in keep]


class KuaiRandDataset(Dataset):
    """KuaiRand logs + user/video features; domains = tabs (most frequent 3..5 by default), tasks = is_click, is_like."""

    name: ClassVar[str] = "kuairand"
    Params: ClassVar[type[BaseModel]] = KuaiRandParams

    def load(self) -> Splits:
        p: KuaiRandParams = self.params  # type: ignore[assignment]
        d = Path(p.dir)
        if not d.is_dir():
            raise DataError(f"KuaiRand directory not found: {d}")
        bad_tasks = [t for t in p.tasks if t not in BINARY_FEEDBACK]
        if bad_tasks:
            raise DataError(
                f"KuaiRand: tasks {bad_tasks} are not binary feedback columns; choose from {list(BINARY_FEEDBACK)}"
            )
        logs = sorted({f for pat in p.log_files for f in d.glob(pat)})
        if not logs:
            raise DataError(
                f"{d}: no log file matches {p.log_files}; KuaiRand logs are named like log_standard_4_08_to_4_21_pure.csv"
            )
        log_cols = ["user_id", "video_id", "hourmin", "time_ms", "tab", *p.tasks]
        log = pd.concat([read_csv_columns(f, log_cols, max_rows=p.max_rows) for f in logs], ignore_index=True)
        users = read_csv_columns(_one(d, p.user_features, "user features"), list(USER_COLUMNS))
        videos = read_csv_columns(
            _one(d, p.video_features, "video features"), ["video_id", "video_duration", *VIDEO_SPARSE]
        )

        notes: list[str] = []
        if log["tab"].isna().any():
            raise DataError(f"{logs[0].parent}: column 'tab' has {int(log['tab'].isna().sum())} missing values")
        tab_counts = log["tab"].value_counts()
        tabs = choose_tabs(tab_counts, p)
        keep = log["tab"].isin(tabs)
        if not keep.all():
            dropped = tab_counts.drop(tabs, errors="ignore")
            notes.append(
                f"dropped {int((~keep).sum()):,} rows ({(~keep).mean():.1%}) from tabs {sorted(int(t) for t in dropped.index)}; "
                f"kept tabs {tabs} as domains (set tabs: to choose)"
            )
            log = log[keep].reset_index(drop=True)

        for frame, key, what in ((users, "user_id", "user features"), (videos, "video_id", "video features")):
            if frame[key].duplicated().any():
                raise DataError(
                    f"{d}: the {what} file lists {key} {_py(frame[key][frame[key].duplicated()].iloc[0])!r} twice"
                )
            unknown = ~log[key].isin(frame[key])
            if unknown.any():
                raise DataError(
                    f"{d}: {int(unknown.sum())} log rows refer to {key}s missing from the {what} file "
                    f"(e.g. {_py(log[key][unknown].iloc[0])!r}); are the files from the same KuaiRand release?"
                )
        df = log.merge(users, on="user_id", how="left").merge(videos, on="video_id", how="left")
        df["hour"] = pd.to_numeric(df["hourmin"], errors="coerce") // 100
        df["tag"] = df["tag"].astype("string").str.split(",").str[0]
        dur = pd.to_numeric(df["video_duration"], errors="coerce")
        df["video_duration_log"] = np.log1p(dur.clip(lower=0).fillna(0.0))
        mapping = ColumnMapping(
            domain="tab",
            labels=list(p.tasks),
            sparse=["user_id", "video_id", "hour", *USER_SPARSE, *VIDEO_SPARSE],
            dense=["video_duration_log"],
            domain_names={str(t): f"tab{t}" for t in tabs},
            timestamp="time_ms",
        )
        self.info = {
            "interactions": len(df),
            "users": int(df["user_id"].nunique()),
            "items": int(df["video_id"].nunique()),
            "notes": notes,
        }
        return encode_table(df, mapping, p.split, where=str(d))
