"""Writers of tiny KuaiRand, Ali-CCP and AliExpress files in their published layouts (for tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdmt_nas.data.aliexpress import COLUMNS as ALIEXPRESS_COLUMNS
from mdmt_nas.data.kuairand import LOG_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS


def write_kuairand(d: Path, n: int = 800, n_users: int = 25, n_videos: int = 40, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    log = pd.DataFrame({c: rng.integers(0, 2, n) for c in LOG_COLUMNS})
    log["user_id"] = rng.integers(0, n_users, n)
    log["video_id"] = rng.integers(0, n_videos, n)
    log["date"] = 20220408 + rng.integers(0, 14, n)
    log["hourmin"] = rng.integers(0, 24, n) * 100
    log["time_ms"] = 1649400000000 + np.sort(rng.integers(0, 10**9, n))
    log["play_time_ms"] = rng.integers(0, 60000, n)
    log["duration_ms"] = rng.integers(1000, 60000, n)
    log["tab"] = rng.choice([1, 0, 2, 4, 6, 9], n, p=[0.45, 0.25, 0.2, 0.09, 0.005, 0.005])
    log.to_csv(d / "log_standard_4_08_to_4_21_pure.csv", index=False)
    users = pd.DataFrame({c: rng.integers(0, 3, n_users) for c in USER_COLUMNS})
    users["user_id"] = np.arange(n_users)
    users["user_active_degree"] = rng.choice(["high_active", "full_active", "middle_active", "UNKNOWN"], n_users)
    users["follow_user_num_range"] = rng.choice(["0", "(0,10]", "(10,50]"], n_users)
    users.to_csv(d / "user_features_pure.csv", index=False)
    videos = pd.DataFrame({c: rng.integers(0, 5, n_videos) for c in VIDEO_COLUMNS})
    videos["video_id"] = np.arange(n_videos)
    videos["video_type"] = rng.choice(["NORMAL", "AD"], n_videos)
    videos["upload_dt"] = "2022-01-01"
    videos["video_duration"] = np.where(rng.random(n_videos) < 0.1, np.nan, rng.integers(1000, 90000, n_videos))
    videos["tag"] = rng.choice(["28", "9,28", "11"], n_videos)
    videos.to_csv(d / "video_features_basic_pure.csv", index=False)
    return d


ALICCP_HEADER = (
    "click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,"
    "109_14,110_14,127_14,150_14,D109_14,D110_14,D127_14,D150_14,D508,D509,D702,D853"
).split(",")


def aliccp_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.integers(1, 50, n) for c in ALICCP_HEADER})
    df["click"] = rng.integers(0, 2, n)
    df["purchase"] = df["click"] * rng.integers(0, 2, n)
    df["301"] = rng.choice([1, 2, 3], n, p=[0.5, 0.3, 0.2])
    for c in ALICCP_HEADER:
        if c.startswith("D"):
            df[c] = rng.random(n).round(4)
    return df


def write_aliccp_dir(d: Path, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for k, (part, n) in enumerate((("train", 500), ("val", 100), ("test", 100))):
        aliccp_frame(n, seed + k).to_csv(d / f"ali_ccp_{part}.csv", index=False)
    return d


def aliexpress_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.integers(0, 30, n) for c in ALIEXPRESS_COLUMNS})
    for c in ALIEXPRESS_COLUMNS:
        if c.startswith("numerical_"):
            df[c] = rng.random(n).round(6)
    df["search_id"] = np.repeat(np.arange(n // 4 + 1), 4)[:n]
    df["click"] = rng.integers(0, 2, n)
    df["conversion"] = df["click"] * rng.integers(0, 2, n)
    return df[ALIEXPRESS_COLUMNS]


def write_aliexpress(d: Path, countries=("NL", "ES", "FR"), seed: int = 0) -> Path:
    for i, c in enumerate(countries):
        sub = d / f"AliExpress_{c}"
        sub.mkdir(parents=True, exist_ok=True)
        aliexpress_frame(240, seed + 10 * i).to_csv(sub / "train.csv", index=False)
        aliexpress_frame(60, seed + 10 * i + 1).to_csv(sub / "test.csv", index=False)
    return d
