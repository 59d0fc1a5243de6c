"""`python -m service`: the address is checked before anything is started or built."""

from __future__ import annotations

import socket

import pytest

from service.__main__ import check_address, main
from service.local import free_port


def test_a_port_in_use_is_a_plain_message_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"127.0.0.1:{port} is in use by another "
                                             "process; stop it, or serve on another port"):
            check_address("127.0.0.1", port)
        with pytest.raises(SystemExit, match="in use"):
            main(["--check", "--port", str(port)])


def test_a_free_port_passes_and_check_starts_nothing() -> None:
    port = free_port()
    check_address("127.0.0.1", port)
    assert main(["--check", "--port", str(port)]) is None  # returned: nothing was exec'd


@pytest.mark.parametrize(("argv", "message"), [
    (["--check", "--host", "nosuchhost.invalid"], "cannot serve on nosuchhost.invalid"),
    (["--check", "--host", "192.0.2.1"], "192.0.2.1:3000 is not an address of this machine"),
])
def test_an_address_this_machine_cannot_listen_on(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(argv)


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_port_out_of_range_is_refused_by_the_parser(port: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--check", "--port", port])
    assert stopped.value.code == 2 and "--port" in capsys.readouterr().err
