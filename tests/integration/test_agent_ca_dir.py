"""Which entries of the CA directory could hold a handshake (`agenttls.ca_dir_unsafe`: the
names OpenSSL opens, `<subject hash>.N` and a CRL's `.rN`, that are there and neither a
regular file nor a directory), the words of a TLS file that could block, and the slow reverse
lookup's warning, field by field. Real files, FIFOs and links in tmp_path; no handshake."""
from __future__ import annotations

import logging
import os
import threading
import types

import pytest

from executor.mesos import agenttls
from executor.mesos.agenttls import TlsSettings, ca_dir_unsafe, client_context, tls_settings

HASH = "0123abcd"


def _unsafe(tmp_path, name: str, make=os.mkfifo, verify: bool = True) -> str | None:
    """What `ca_dir_unsafe` says of a CA directory holding `name`, made by `make`."""
    cas = tmp_path / "cas"
    cas.mkdir(parents=True)
    (cas / "ca.pem").write_bytes(b"")  # a regular file among them
    make(cas / name)
    return ca_dir_unsafe(TlsSettings(verify_server_cert=verify, ca_dir=str(cas)))


def _refused(tmp_path, name: str) -> str:
    return (f"LIBPROCESS_SSL_CA_DIR='{tmp_path}/cas' holds {name}, which is not a regular file: OpenSSL "
            "would open it during a handshake, which could block for ever")


@pytest.mark.parametrize("name", [f"{HASH}.0", f"{HASH}.17", f"{HASH}.r0", f"{HASH}.r12"])
def test_a_fifo_openssl_would_open_is_refused_in_these_words(tmp_path, name):
    assert _unsafe(tmp_path, name) == _refused(tmp_path, name)


@pytest.mark.parametrize("name", [
    "0123ABCD.0",  # OpenSSL's hash is lower case
    "0123abcg.0", "0123abc.0", "00123abcd.0", f"{HASH}", f"{HASH}.", f"{HASH}.r", f"{HASH}.rr0", f"{HASH}.R0",
    f"{HASH}.0.bak", f"{HASH}.x0", f"{HASH}.\u0663",  # an Arabic-Indic digit: not a number OpenSSL reads
    "x.0123abcd.0", f"{HASH}0.0",
])
def test_a_fifo_openssl_never_opens_is_left_alone(tmp_path, name):
    assert _unsafe(tmp_path, name) is None


def test_a_device_is_refused_too_and_a_link_is_judged_by_what_it_names(tmp_path):
    assert _unsafe(tmp_path / "a", f"{HASH}.0", lambda p: p.symlink_to("/dev/zero")) is not None
    assert _unsafe(tmp_path / "b", f"{HASH}.0", lambda p: p.symlink_to(tmp_path / "none")) is None  # dangling
    assert _unsafe(tmp_path / "c", f"{HASH}.0", lambda p: p.mkdir()) is None  # a directory: OpenSSL's words


def test_a_ca_dir_is_looked_at_only_when_the_certificate_is_verified(tmp_path):
    assert _unsafe(tmp_path, f"{HASH}.0", verify=False) is None
    assert ca_dir_unsafe(TlsSettings(verify_server_cert=True, ca_dir=str(tmp_path / "gone"))) is None


def test_the_refusal_names_the_variable_that_gave_the_directory(tmp_path):
    cas = tmp_path / "cas"
    cas.mkdir()
    os.mkfifo(cas / f"{HASH}.0")
    settings = tls_settings({"SSL_ENABLED": "1", "SSL_VERIFY_CERT": "1", "SSL_CA_DIR": str(cas)})
    assert ca_dir_unsafe(settings) == (f"SSL_CA_DIR='{cas}' holds {HASH}.0, which is not a regular file: "
                                       "OpenSSL would open it during a handshake, which could block for ever")


def test_a_tls_file_that_could_block_is_refused_in_these_words_and_a_missing_one_left_to_openssl(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError) as refused:
        client_context(tls_settings({"LIBPROCESS_SSL_VERIFY_CERT": "1", "LIBPROCESS_SSL_CA_FILE": str(fifo)}))
    assert str(refused.value) == f"LIBPROCESS_SSL_CA_FILE='{fifo}' is not a regular file: opening it could block for ever"
    with pytest.raises(ValueError) as missing:
        client_context(tls_settings({"LIBPROCESS_SSL_VERIFY_CERT": "1", "LIBPROCESS_SSL_CA_FILE": str(tmp_path / "no")}))
    assert "is not a regular file" not in str(missing.value), missing.value


def test_a_slow_lookup_s_warning_says_how_long_it_took_against_libprocess_threshold(caplog, monkeypatch):
    """The lookup itself, in this thread, on a clock the test sets: 0.6 s."""
    clock = iter([50.0, 50.6])
    monkeypatch.setattr(agenttls, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(agenttls.socket, "getnameinfo", lambda address, flags: ("agent.example", "0"))
    names, done, found = agenttls.ReverseNames(), threading.Event(), []
    with caplog.at_level(logging.INFO):
        names._look_up("192.0.2.9", done, found)
    assert done.is_set() and found == ["agent.example"]
    [warned] = [r.stoker_fields for r in caplog.records if getattr(r, "stoker_event", "") == "agent_reverse_dns_slow"]
    assert warned == {"address": "192.0.2.9", "took_ms": 600, "threshold_ms": 100, "name": "agent.example",
                      "why": "the legacy hostname check of the agent's certificate waits for it"}
