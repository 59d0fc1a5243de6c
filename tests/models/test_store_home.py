"""One model store for every entry point: `make`, `alignserve` and `python -m service` must not
look in different places (one used to read ~/bentoml, another ./.bentoml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from models.store import use_default_home

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_store_is_the_default_and_an_explicit_home_wins(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    assert use_default_home(environ) == REPO / ".bentoml"
    assert environ == {"BENTOML_HOME": str(REPO / ".bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    mine = {"BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "false"}
    assert use_default_home(mine) == tmp_path and mine["BENTOML_DO_NOT_TRACK"] == "false"


def test_the_cli_outside_make_reads_the_checkout_store(tmp_path: Path) -> None:
    """Run from elsewhere with no BENTOML_HOME: the store it names is the checkout's."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    code = ("from models import store; store._bentoml(); print(store.store_location())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().startswith(str(REPO / ".bentoml"))


def test_an_empty_store_says_where_it_looked_and_how_to_fill_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BENTOML_HOME": str(tmp_path / "home"),
           "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run([sys.executable, "-m", "training.cli", "models", "list"], cwd=REPO,
                         env=env, check=True, capture_output=True, text=True).stdout
    assert out.startswith(f"no models in the store at {tmp_path / 'home'}")
    assert "make models" in out
