"""`executor/mesos/agenttls.py`'s decisions stated exactly, with no handshake: the words of
each refusal of libprocess' SSL variables, the legacy check's choice of name, and the words a
failed handshake is given (`_words`, `_guess`, from the errors `ssl` raises)."""
from __future__ import annotations

import ssl

import pytest

from executor.mesos.agenttls import TlsSettings, _guess, _words, legacy_check, tls_settings

ONE_FILE = "is set but LIBPROCESS_SSL_{} is not: a client certificate needs both"
CA_BUNDLE = (" (SSL_CERT_FILE is also OpenSSL's CA bundle variable: libprocess reads it as its deprecated "
             "name of LIBPROCESS_SSL_CERT_FILE)")


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(ValueError) as refused:
        tls_settings(environ)
    return str(refused.value)


@pytest.mark.parametrize("environ, words", [
    ({"LIBPROCESS_SSL_CERT_FILE": "/c.pem"}, "LIBPROCESS_SSL_CERT_FILE " + ONE_FILE.format("KEY_FILE")),
    ({"SSL_CERT_FILE": "/c.pem"}, "SSL_CERT_FILE " + ONE_FILE.format("KEY_FILE") + CA_BUNDLE),
    ({"LIBPROCESS_SSL_KEY_FILE": "/k.pem"}, "LIBPROCESS_SSL_KEY_FILE " + ONE_FILE.format("CERT_FILE")),
    ({"SSL_KEY_FILE": "/k.pem"}, "SSL_KEY_FILE " + ONE_FILE.format("CERT_FILE")),
    ({"LIBPROCESS_SSL_ENABLE_TLS_V1_2": "false"},
     "every TLS version is disabled (LIBPROCESS_SSL_ENABLE_TLS_V1_0 ... _V1_3): no handshake can succeed"),
    ({"SSL_VERIFY_CERT": "1", "SSL_HOSTNAME_VALIDATION_SCHEME": "openssl"},
     "SSL_HOSTNAME_VALIDATION_SCHEME=openssl checks the agent's IP address (the executor reaches it by address, "
     "with no DNS name), which LIBPROCESS_SSL_VERIFY_IPADD=true allows: without it libprocess fails every "
     "connection too"),
    ({"SSL_CIPHERS": ""}, "SSL_CIPHERS='' is set but empty, which libprocess refuses (an empty variable is not "
                          "an unset one)"),
    ({"LIBPROCESS_SSL_ENABLE_SSL_V3": "yes"}, "LIBPROCESS_SSL_ENABLE_SSL_V3='yes' is not true, false, 1 or 0"),
])
def test_each_refusal_names_the_variable_that_was_set_in_these_words(environ, words):
    assert refusal(environ) == words


def test_an_empty_ca_variable_is_refused_only_when_the_certificate_is_verified():
    """libprocess loads its CA file or directory only to verify; unverified, an empty one is
    never read."""
    for name in ("LIBPROCESS_SSL_CA_FILE", "SSL_CA_DIR"):
        assert tls_settings({name: ""}).verify_server_cert is False
        assert refusal({name: "", "LIBPROCESS_SSL_VERIFY_CERT": "1"}).startswith(f"{name}='' is set but empty")


def test_a_variable_left_unset_is_named_by_its_libprocess_name():
    assert TlsSettings().name("ciphers") == "LIBPROCESS_SSL_CIPHERS"
    assert tls_settings({"SSL_CIPHERS": "AES128-SHA"}).name("ciphers") == "SSL_CIPHERS"


# ---- the legacy check's choice ----

IPADD = TlsSettings(verify_server_cert=True, verify_ipadd=True)
LEGACY = TlsSettings(verify_server_cert=True)


def test_a_dns_name_in_the_san_passes_whatever_the_common_name_says():
    cert = {"subject": ((("commonName", "other.example"),),),
            "subjectAltName": (("IP Address", "agent-1.example"), ("DNS", "agent-1.example"))}
    assert legacy_check(cert, "10.0.0.5", "agent-1.example", LEGACY) is None
    # an IP SAN is not a DNS one, even spelled as the name; without VERIFY_IPADD not looked at
    ip_only = {"subject": cert["subject"], "subjectAltName": (("IP Address", "agent-1.example"),)}
    assert legacy_check(ip_only, "10.0.0.5", "agent-1.example", LEGACY) \
        == "Presented Certificate Name: other.example does not match peer hostname name: agent-1.example"


@pytest.mark.parametrize("san, ip", [("FE80:0:0:0:0:0:0:1\n", "fe80::1"), ("10.0.0.5", "10.0.0.5")])
def test_an_ip_san_passes_as_the_same_address_in_either_family(san, ip):
    """`getpeercert` spells an IPv6 SAN in full and upper case; blanks about it are stripped."""
    assert legacy_check({"subjectAltName": (("IP Address", san),)}, ip, None, IPADD) is None
    assert legacy_check({"subjectAltName": (("IP Address", san),)}, "10.0.0.6", None, IPADD) \
        == "Could not verify presented certificate with IP 10.0.0.6"


# ---- a failed handshake in words ----

def _error(kind: type[ssl.SSLError], **attributes: object) -> ssl.SSLError:
    error = kind(1, "[SSL] what OpenSSL said")
    for name, value in attributes.items():
        setattr(error, name, value)
    return error


@pytest.mark.parametrize("error, words", [
    (_error(ssl.SSLCertVerificationError, verify_message="unable to get local issuer certificate",
            reason="CERTIFICATE_VERIFY_FAILED"), "certificate verify failed: unable to get local issuer certificate"),
    (_error(ssl.SSLCertVerificationError, verify_message="", reason="CERTIFICATE_VERIFY_FAILED"),
     "certificate verify failed"),
    (_error(ssl.SSLError, reason="SSLV3_ALERT_HANDSHAKE_FAILURE"), "sslv3 alert handshake failure"),
    (_error(ssl.SSLError, reason=None), "[SSL] what OpenSSL said"),  # no reason: its strerror, as it is
    (FileNotFoundError(2, "No such file or directory"), "no such file or directory"),
    (OSError("timed out"), "timed out"),
    (TimeoutError(), "TimeoutError"),
])
def test_an_error_s_words_are_openssl_s_reason_or_the_error_s_own(error, words):
    assert _words(error) == words


CIPHERS = " (the agent shares no cipher with {}{})"
NO_CERT = ", or requires a client certificate and LIBPROCESS_SSL_CERT_FILE is not set"


@pytest.mark.parametrize("error, settings, guess", [
    (_error(ssl.SSLError, reason="SSLV3_ALERT_HANDSHAKE_FAILURE"), TlsSettings(),
     CIPHERS.format("LIBPROCESS_SSL_CIPHERS", NO_CERT)),
    (_error(ssl.SSLError, reason="SSLV3_ALERT_HANDSHAKE_FAILURE"),
     tls_settings({"SSL_CIPHERS": "AES128-SHA", "SSL_CERT_FILE": "/c", "SSL_KEY_FILE": "/k"}),
     CIPHERS.format("SSL_CIPHERS", "")),
    (_error(ssl.SSLError, reason="CERTIFICATE_VERIFY_FAILED"), TlsSettings(), ""),
    (_error(ssl.SSLError, reason=None), TlsSettings(), ""),
    (ConnectionResetError(104, "Connection reset by peer"), TlsSettings(), ""),
])
def test_a_bare_handshake_failure_is_guessed_at_and_nothing_else_is(error, settings, guess):
    assert _guess(error, settings) == guess
