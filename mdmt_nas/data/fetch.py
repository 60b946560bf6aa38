"""Getting real datasets into the local cache, without installing anything.

MovieLens-100K ships inside the RecBole wheel as atomic files. `pip
download` fetches the wheel (through whatever index/proxy pip is configured
for), we extract only the three ml-100k files and delete the wheel; RecBole
itself is never installed or imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from mdmt_nas.errors import DataError, UserError
from mdmt_nas.files import atomic_file

RECBOLE_REQUIREMENT = "recbole==1.2.1"
ML100K_MEMBERS = tuple(f"recbole/dataset_example/ml-100k/ml-100k.{ext}" for ext in ("inter", "user", "item"))


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $MDMT_NAS_CACHE, else ~/.cache/mdmt-nas."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MDMT_NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mdmt-nas"


def ml100k_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "ml-100k"


def pip_download(requirement: str, dest: Path) -> subprocess.CompletedProcess:
    """`python -m pip download REQ --no-deps --only-binary=:all: -d DEST` in a subprocess."""
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    return subprocess.run(cmd, capture_output=True, text=True)


def fetch_ml100k(
    cache: str | os.PathLike | None = None,
    force: bool = False,
    downloader: Callable[[str, Path], subprocess.CompletedProcess] = pip_download,
) -> Path:
    """Put ml-100k.inter/.user/.item into `<cache>/ml-100k` (a no-op if they are there); returns that dir."""
    dest = ml100k_dir(cache)
    names = [Path(m).name for m in ML100K_MEMBERS]
    if not force and all((dest / n).exists() for n in names):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recbole-", dir=dest.parent) as tmp:
        proc = downloader(RECBOLE_REQUIREMENT, Path(tmp))
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
            raise UserError(
                f"could not download {RECBOLE_REQUIREMENT} (needed for its bundled ml-100k files):\n{tail}\n"
                f"Check network/pip index access (pip honours PIP_INDEX_URL), or copy "
                f"ml-100k.inter/.user/.item into {dest} by hand"
            )
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise UserError(f"pip reported success but left no recbole wheel in {tmp}")
        try:
            dest.mkdir(exist_ok=True)
            with zipfile.ZipFile(wheels[0]) as zf:
                for member, name in zip(ML100K_MEMBERS, names):
                    with zf.open(member) as src, atomic_file(dest / name, "wb") as out:
                        shutil.copyfileobj(src, out)
        except KeyError as exc:
            raise DataError(
                f"{wheels[0].name} does not contain {exc.args[0]}; is it the right RecBole version?"
            ) from None
        except zipfile.BadZipFile:
            raise DataError(f"{wheels[0].name} is not a valid wheel (zip) file; delete it and retry") from None
        finally:
            for w in wheels:
                w.unlink(missing_ok=True)
    return dest


#: Dataset name -> fetcher(cache_dir) -> directory, for `mdmt-nas data get`.
FETCHERS: dict[str, Callable[..., Path]] = {"ml-100k": fetch_ml100k}

#: Datasets that cannot be fetched here, with where to get them.
MANUAL: dict[str, str] = {
    "ml-1m": "https://grouplens.org/datasets/movielens/1m/ (users.dat, movies.dat, ratings.dat)",
    "ml-100k-original": "https://grouplens.org/datasets/movielens/100k/ (u.data, u.user, u.item)",
    "kuairand": "https://kuairand.com/ (log_standard_*.csv, user_features*.csv, video_features_basic*.csv)",
    "aliccp": "https://tianchi.aliyun.com/dataset/408 (preprocessed CSV with click, purchase, 101, ..., 301, D109_14, ...)",
    "aliexpress": "https://tianchi.aliyun.com/dataset/74690 (AliExpress_<CC>/train.csv, test.csv)",
}
