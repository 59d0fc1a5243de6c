"""Start the service: `python -m service [--host H] [--port P]`.

The one command behind `make serve`, the container's entrypoint and the tests. It runs
`bentoml serve service.service:AlignServe` on the model store every entry point shares
(models/store.py's use_default_home), after one preparation for read-only deployments:
when ALIGNSERVE_MODEL_STORE names a directory of stored models (baked into an image, or a
mounted volume), $BENTOML_HOME/models becomes a link to it, so BENTOML_HOME itself can be a
small writable scratch directory (BentoML keeps its Prometheus files there).

`--check` only checks that the address can be listened on, and exits: `make serve` runs it
before building the default models, so a port in use is said at once, not after the build.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
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


def check_address(host: str, port: int) -> None:
    """Exit with a plain message when the server could not listen on host:port (BentoML would
    fail with a traceback, and `make serve` only after building the models)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise SystemExit(f"alignserve: cannot serve on {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(address)
        except OSError as e:
            why = {errno.EADDRINUSE: "is in use by another process; stop it, or serve on "
                                     "another port (--port N; make serve PORT=N)",
                   errno.EACCES: "needs privileges this process lacks; use a port above 1023",
                   errno.EADDRNOTAVAIL: "is not an address of this machine"
                   }.get(e.errno or 0, f"cannot be listened on ({e.strerror})")
            raise SystemExit(f"alignserve: {host}:{port} {why}") from None


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {text!r}")
    return int(text)


def command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).parent / "bentoml"
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="Interface to listen on; 0.0.0.0 inside a container.")
    parser.add_argument("--port", type=port_number, default=3000)
    parser.add_argument("--check", action="store_true",
                        help="Only check that host:port can be listened on, then exit.")
    args = parser.parse_args(argv)
    check_address(args.host, args.port)
    if args.check:
        return
    prepare_home(os.environ)
    cmd = command(args.host, args.port)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
