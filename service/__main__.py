"""Start the service: `python -m service [--host H] [--port P]`.

The one command behind `make serve`, the container's entrypoint and the tests. It runs
`bentoml serve service.service:AlignServe` on the model store every entry point shares
(models/store.py's use_default_home), after one preparation for read-only deployments:
when ALIGNSERVE_MODEL_STORE names a directory of stored models (baked into an image, or a
mounted volume), $BENTOML_HOME/models becomes a link to it, so BENTOML_HOME itself can be a
small writable scratch directory (BentoML keeps its Prometheus files there).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from models.store import use_default_home

SERVICE = "service.service:AlignServe"


def prepare_home(environ: MutableMapping[str, str]) -> None:
    use_default_home(environ)
    store = environ.get("ALIGNSERVE_MODEL_STORE")
    if not store:
        return
    if not Path(store).is_dir():
        raise SystemExit(f"alignserve: ALIGNSERVE_MODEL_STORE={store} is not a directory")
    home = Path(environ["BENTOML_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    models = home / "models"
    if models.is_symlink() and models.resolve() != Path(store).resolve():
        models.unlink()
    if not models.exists():
        models.symlink_to(Path(store).resolve(), target_is_directory=True)
    elif models.resolve() != Path(store).resolve():
        raise SystemExit(f"alignserve: {models} already holds a model store; unset "
                         "ALIGNSERVE_MODEL_STORE or point BENTOML_HOME elsewhere")


def command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).parent / "bentoml"
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="Interface to listen on; 0.0.0.0 inside a container.")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    prepare_home(os.environ)
    cmd = command(args.host, args.port)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
