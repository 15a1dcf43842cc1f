"""The executor's TLS files (LIBPROCESS_SSL_CERT_FILE, KEY_FILE, CA_FILE, and OpenSSL's own
SSL_CERT_FILE when no CA variable is set) must never block its start: a FIFO given for one
is a settings error naming the variable, at once (opening a FIFO waits for a writer, for
ever). Real files and FIFOs; `client_context` runs in a thread so that a hang fails the test
(the FIFO is then opened for writing, which lets the thread go)."""
from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

import pytest

from executor.mesos.agentroute import agent_route
from executor.mesos.agenttls import client_context, tls_settings
from executor.mesos.transport import AgentTransport, Outcome
from executor.mesos.wire import Calls
from tests.support.agent_sim import AgentSimulator
from tests.support.agent_tls import agent_context, agent_environ, cert, client_env, key


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


# ---- LIBPROCESS_SSL_CA_DIR: OpenSSL opens <hash>.N there during a handshake ----

def _within_3s(action: Callable[[], object], fifo: str) -> object:
    """`action()`'s result or exception, within 3 s; else the FIFO is opened for writing
    (which lets a reader's open return) and the test fails."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(action())
        except Exception as exc:  # what the caller asserts on
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(3.0)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(3.0)
        pytest.fail("the handshake blocked on the FIFO in the CA directory")
    return result[0]


@pytest.fixture
def ca_dir(tmp_path):
    """A CA directory, and the name OpenSSL looks the test CA up by (its subject hash)."""
    found = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", cert("ca")], check=True,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    path = tmp_path / "cas"
    path.mkdir()
    return path, found.stdout.strip() + ".0"


def _subscribe_verified(sim: AgentSimulator, ca_dir: str) -> object:
    environ = agent_environ(sim.endpoint, client_env(None, verify_server_cert="1", ca_dir=ca_dir))
    transport = AgentTransport(agent_route(sim.endpoint, environ, "/"))  # builds the context
    body = Calls(sim.framework_id, sim.executor_id).subscribe([], [])
    return transport, lambda: transport.subscribe(body, 1.0, 1.0)


def test_a_fifo_named_like_a_ca_in_the_ca_dir_is_refused_at_start(tmp_path, ca_dir):
    """Without the check, the handshake's lookup of the agent's issuer opened the FIFO and
    the SUBSCRIBE waited for a writer for ever (its timeouts are the socket's)."""
    path, name = ca_dir
    os.mkfifo(path / name)
    with AgentSimulator(sandbox=tmp_path, tls=agent_context()) as sim:
        found = _within_3s(lambda: _subscribe_verified(sim, str(path))[1](), str(path / name))
    assert isinstance(found, ValueError), found
    assert str(found) == (f"LIBPROCESS_SSL_CA_DIR='{path}' holds {name}, which is not a regular file: "
                          "OpenSSL would open it during a handshake, which could block for ever")


def test_a_fifo_made_in_the_ca_dir_after_start_fails_the_handshake_at_once(tmp_path, ca_dir):
    """A CA directory is read during each handshake (libprocess' meaning, kept: a CA added
    later is used), so it is looked at again before each one."""
    path, name = ca_dir
    os.symlink(cert("ca"), path / name)
    with AgentSimulator(sandbox=tmp_path, tls=agent_context()) as sim:
        transport, subscribe = _subscribe_verified(sim, str(path))
        (path / name).unlink()
        os.mkfifo(path / name)
        result, stream = _within_3s(subscribe, str(path / name))
        transport.close()
    assert stream is None and result.outcome is Outcome.TRANSIENT, result
    assert (f"TLS handshake with {sim.endpoint} failed: LIBPROCESS_SSL_CA_DIR='{path}' holds {name}, which "
            "is not a regular file") in result.detail, result.detail


def test_a_ca_dir_of_hash_named_links_verifies_the_agent(tmp_path, ca_dir):
    path, name = ca_dir
    os.symlink(cert("ca"), path / name)
    os.mkfifo(path / "not-a-hash.0")  # never looked up: left alone
    with AgentSimulator(sandbox=tmp_path, tls=agent_context()) as sim:
        transport, subscribe = _subscribe_verified(sim, str(path))
        result, stream = subscribe()
        assert result.outcome is Outcome.ACCEPTED and stream is not None, result
        stream.abort()
        stream.close()
        transport.close()
