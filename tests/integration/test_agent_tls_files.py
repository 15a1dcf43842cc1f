"""The executor's TLS files (LIBPROCESS_SSL_CERT_FILE, KEY_FILE, CA_FILE, and OpenSSL's own
SSL_CERT_FILE when no CA variable is set) must never block its start: a FIFO given for one
is a settings error naming the variable, at once (opening a FIFO waits for a writer, for
ever). Real files and FIFOs; `client_context` runs in a thread so that a hang fails the test
(the FIFO is then opened for writing, which lets the thread go)."""
from __future__ import annotations

import os
import threading

import pytest

from executor.mesos.agenttls import client_context, tls_settings
from tests.support.agent_tls import cert, key


def _context_error(environ: dict[str, str], fifo: str) -> str:
    """What `client_context` says for these settings, within 3 s."""
    result: list[str] = []

    def build() -> None:
        try:
            client_context(tls_settings({"LIBPROCESS_SSL_ENABLED": "true", **environ}))
            result.append("accepted")
        except ValueError as exc:
            result.append(str(exc))

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    thread.join(3.0)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a reader is there: its open returns
        os.close(fd)
        thread.join(3.0)
        pytest.fail("reading the TLS files blocked on the FIFO")
    return result[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("variable", ["CERT_FILE", "KEY_FILE", "CA_FILE"])
def test_a_fifo_given_for_a_tls_file_is_an_error_naming_its_variable(fifo, variable):
    environ = {"LIBPROCESS_SSL_CERT_FILE": cert("client"), "LIBPROCESS_SSL_KEY_FILE": key("client"),
               "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true", "LIBPROCESS_SSL_CA_FILE": cert("ca"),
               f"LIBPROCESS_SSL_{variable}": fifo}
    words = _context_error(environ, fifo)
    assert f"LIBPROCESS_SSL_{variable}='{fifo}' is not a regular file" in words


def test_a_fifo_as_openssl_s_own_ca_bundle_variable_is_an_error_naming_it(fifo, monkeypatch):
    """No CA variable: OpenSSL's default paths, which SSL_CERT_FILE of the process moves."""
    monkeypatch.setenv("SSL_CERT_FILE", fifo)
    words = _context_error({"LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true"}, fifo)
    assert f"SSL_CERT_FILE='{fifo}' is not a regular file" in words
    assert "OpenSSL" in words


def test_with_no_ca_variable_verification_uses_openssl_s_default_paths(monkeypatch):
    """As libprocess: OpenSSL's defaults, SSL_CERT_FILE of the process (the host's CA bundle
    variable) moving them; not read as libprocess' deprecated CERT_FILE when the
    LIBPROCESS_SSL_ one is set."""
    monkeypatch.setenv("SSL_CERT_FILE", cert("ca"))
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent")
    environ = {"LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true",
               "LIBPROCESS_SSL_CERT_FILE": cert("client"), "LIBPROCESS_SSL_KEY_FILE": key("client"),
               "SSL_CERT_FILE": cert("ca")}
    settings = tls_settings(environ)
    assert settings.cert_file == cert("client")
    assert client_context(settings).cert_store_stats()["x509_ca"] == 1


def test_a_directory_given_for_a_file_is_an_error_naming_its_variable(tmp_path):
    environ = {"LIBPROCESS_SSL_CERT_FILE": str(tmp_path), "LIBPROCESS_SSL_KEY_FILE": key("client")}
    assert "LIBPROCESS_SSL_CERT_FILE=" in _context_error(environ, "")


def test_a_key_with_a_passphrase_is_an_error_that_says_so_and_never_prompts(tmp_path):
    import subprocess

    encrypted = tmp_path / "client.key"
    subprocess.run(["openssl", "pkey", "-in", key("client"), "-aes256", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    environ = {"LIBPROCESS_SSL_CERT_FILE": cert("client"), "LIBPROCESS_SSL_KEY_FILE": str(encrypted)}
    words = _context_error(environ, "")
    assert words == (f"LIBPROCESS_SSL_KEY_FILE='{encrypted}' is encrypted (it has a passphrase): "
                     "the executor has no terminal to ask for it on, as libprocess would"), words
