"""Writers of tiny MovieLens files in the exact published layouts (for tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AGES_1M = [1, 18, 25, 35, 45, 50, 56]
OCCUPATIONS = ["technician", "other", "writer", "executive", "student"]
GENRES_1M = ["Animation|Children's|Comedy", "Action|Adventure|Thriller", "Drama", "Comedy|Romance", "Sci-Fi"]


def _ratings(n_users: int, n_items: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n)
    items = rng.integers(1, n_items + 1, n)
    rating = rng.integers(1, 6, n)
    ts = 880000000 + np.arange(n) * 37
    return np.stack([users, items, rating, ts], axis=1)


def write_recbole(d: Path, n_users: int = 30, n_items: int = 20, n: int = 400, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    r = _ratings(n_users, n_items, n, seed)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + ["\t".join(map(str, row)) for row in r]
    (d / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    for u in range(1, n_users + 1):
        age = [19, 24, 27, 33, 40, 61][u % 6]
        users.append(f"{u}\t{age}\t{'MF'[u % 2]}\t{OCCUPATIONS[u % 5]}\t{['85711', '05201', 'T8H1N', '94043'][u % 4]}")
    (d / "ml-100k.user").write_text("\n".join(users) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(1, n_items + 1):
        items.append(f'{i}\tMovie "{i}"\t1995\t{GENRES_1M[i % 5].replace("|", " ")}')
    (d / "ml-100k.item").write_text("\n".join(items) + "\n")
    return d


def write_original_100k(d: Path, n_users: int = 30, n_items: int = 20, n: int = 400, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    r = _ratings(n_users, n_items, n, seed)
    (d / "u.data").write_text("\n".join("\t".join(map(str, row)) for row in r) + "\n")
    users = []
    for u in range(1, n_users + 1):
        age = [19, 24, 27, 33, 40, 61][u % 6]
        users.append(f"{u}|{age}|{'MF'[u % 2]}|{OCCUPATIONS[u % 5]}|{['85711', '05201', 'T8H1N', '94043'][u % 4]}")
    (d / "u.user").write_text("\n".join(users) + "\n")
    items = []
    for i in range(1, n_items + 1):
        flags = ["0"] * 19
        if i % 7:
            flags[i % 19] = "1"
            flags[(i * 3) % 19] = "1"
        items.append(f"{i}|Café {i} (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Film%20{i}|" + "|".join(flags))
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    return d


def write_ml1m(d: Path, n_users: int = 30, n_items: int = 20, n: int = 400, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    r = _ratings(n_users, n_items, n, seed)
    r = r[np.lexsort((r[:, 3], r[:, 0]))]  # ratings.dat is sorted by user
    (d / "ratings.dat").write_text("\n".join("::".join(map(str, row)) for row in r) + "\n")
    users = [
        f"{u}::{'MF'[u % 2]}::{AGES_1M[u % 7]}::{u % 21}::{['48067', '70072', 'T8H1N'][u % 3]}"
        for u in range(1, n_users + 1)
    ]
    (d / "users.dat").write_text("\n".join(users) + "\n")
    movies = [f"{i}::Amélie {i} (2001)::{GENRES_1M[i % 5]}" for i in range(1, n_items + 1)]
    (d / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return d
