"""Which environment variables are libprocess' SSL flags, as stout's flags find them
(FlagsBase::extract and load, libprocess' openssl.cpp reinitialize()): the prefix as it is,
the rest in any case; the same name in two cases; LIBPROCESS_SSL_ over SSL_; `no-NAME`."""
from __future__ import annotations

import logging

import pytest

from config.executorsettings import ExecutorSettings
from executor.mesos.agentroute import agent_route, ssl_mismatches, ssl_variables
from executor.mesos.agenttls import TlsSettings, tls_settings
from executor.mesos.process import _route

ON = {"LIBPROCESS_SSL_ENABLED": "1"}


def https(environ: dict[str, str]) -> bool:
    return agent_route("10.0.0.5:5051", environ, "/").tls is not None


@pytest.mark.parametrize("environ, on", [
    ({"LIBPROCESS_SSL_enabled": "true"}, True),  # the rest of the name in any case
    ({"SSL_Enabled": "1"}, True),
    ({"libprocess_ssl_enabled": "true"}, False),  # the prefix only as it is
    ({"Ssl_ENABLED": "1"}, False),
    ({"LIBPROCESS_SSL_enabled": "false", "SSL_ENABLED": "true"}, False),  # LIBPROCESS_SSL_ wins in any case
    ({"LIBPROCESS_SSL_ENABLED": "false", "LIBPROCESS_SSL_enabled": "1"}, True),  # the later in byte order
    ({"LIBPROCESS_SSL_enabled": "false", "LIBPROCESS_SSL_ENABLED": "1"}, False),
])
def test_ssl_is_on_by_its_variable_in_any_case_after_the_prefix(environ, on):
    assert https(environ) is on


def test_every_flag_is_read_in_any_case_and_named_as_given():
    settings = tls_settings({"LIBPROCESS_SSL_Cert_File": "/c.pem", "SSL_key_file": "/k.pem",
                             "LIBPROCESS_SSL_verify_server_cert": "1", "SSL_ca_FILE": "/ca.pem",
                             "LIBPROCESS_SSL_enable_tls_v1_3": "true"})
    assert settings == TlsSettings(cert_file="/c.pem", key_file="/k.pem", verify_server_cert=True,
                                   ca_file="/ca.pem", versions=("TLSv1_2", "TLSv1_3"))
    assert (settings.name("cert_file"), settings.name("key_file")) == ("LIBPROCESS_SSL_Cert_File", "SSL_key_file")
    with pytest.raises(ValueError, match=r"LIBPROCESS_SSL_Verification_Depth='x' is not a whole number"):
        tls_settings({"LIBPROCESS_SSL_Verification_Depth": "x"})


def test_the_same_name_in_two_cases_the_variable_last_in_byte_order_wins():
    """stout reads the environment into a std::map (sorted by name) and each later variable
    overwrites the flag: 'CIPHERS' < 'Ciphers' < 'ciphers'; and SSL_ in any case loses to
    LIBPROCESS_SSL_ in any case."""
    environ = {"LIBPROCESS_SSL_ciphers": "c", "LIBPROCESS_SSL_CIPHERS": "C", "LIBPROCESS_SSL_Ciphers": "Ci",
               "SSL_zzz": "unknown", "SSL_CERT_FILE": "/c.pem", "SSL_cert_file": "/last.pem"}
    assert ssl_variables(environ) == {"ciphers": ("LIBPROCESS_SSL_ciphers", "c"),
                                      "cert_file": ("SSL_cert_file", "/last.pem")}


@pytest.mark.parametrize("environ, verify", [
    ({"SSL_NO-VERIFY_SERVER_CERT": ""}, False),
    ({"LIBPROCESS_SSL_no-verify_server_cert": "", "SSL_no-verify_server_cert": "x"}, False),  # the SSL_ one unread
    ({"LIBPROCESS_SSL_no-verify_cert": "", "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "1"}, True),  # another flag
])
def test_no_name_is_a_boolean_set_false(environ, verify):
    """stout's negation (`--no-NAME` on a command line) is read from the environment too;
    `no-NAME` and `NAME` are two names until both prefixes are merged."""
    assert tls_settings(environ).verify_server_cert is verify


@pytest.mark.parametrize("environ, words", [
    ({**ON, "LIBPROCESS_SSL_no-verify_cert": "true"},
     r"LIBPROCESS_SSL_no-verify_cert='true': a negated boolean \(no-\) takes no value"),
    ({**ON, "SSL_NO-CERT_FILE": ""}, r"SSL_NO-CERT_FILE: CERT_FILE is not a boolean, it cannot be negated \(no-\)"),
    ({**ON, "LIBPROCESS_SSL_no-verify_cert": "", "LIBPROCESS_SSL_verify_cert": "1"},
     r"LIBPROCESS_SSL_verify_cert and LIBPROCESS_SSL_no-verify_cert both set VERIFY_CERT"),
    ({**ON, "LIBPROCESS_SSL_no-verify_server_cert": "", "SSL_VERIFY_SERVER_CERT": "1"},  # not one over the other
     r"SSL_VERIFY_SERVER_CERT and LIBPROCESS_SSL_no-verify_server_cert both set VERIFY_SERVER_CERT"),
    ({"LIBPROCESS_SSL_NO-ENABLED": "", "SSL_ENABLED": "1"},  # merged: both given, libprocess exits
     r"SSL_ENABLED and LIBPROCESS_SSL_NO-ENABLED both set ENABLED"),
])
def test_a_negation_libprocess_refuses_is_an_error_naming_the_variable(environ, words):
    with pytest.raises(ValueError, match=words):
        agent_route("10.0.0.5:5051", environ, "/")


def test_a_negation_is_read_as_the_flag_set_false_by_that_variable_among_others():
    """Each `no-NAME` is merged, whatever other flags sort before it."""
    environ = {"LIBPROCESS_SSL_CIPHERS": "x", "LIBPROCESS_SSL_no-verify_cert": "", "SSL_NO-require_cert": "",
               "TLS_CIPHERS": "y", "MESOS_ENABLED": "1"}  # (no prefix of libprocess': TLS_ is as long as SSL_)
    assert ssl_variables(environ) == {"ciphers": ("LIBPROCESS_SSL_CIPHERS", "x"),
                                      "verify_cert": ("LIBPROCESS_SSL_no-verify_cert", "false"),
                                      "require_cert": ("SSL_NO-require_cert", "false")}


@pytest.mark.parametrize("environ, words", [
    ({"LIBPROCESS_SSL_no-verify_cert": "", "LIBPROCESS_SSL_verify_cert": "1"},
     "LIBPROCESS_SSL_verify_cert and LIBPROCESS_SSL_no-verify_cert both set VERIFY_CERT, which libprocess "
     "refuses at its start"),
    ({"SSL_NO-CERT_FILE": ""}, "SSL_NO-CERT_FILE: CERT_FILE is not a boolean, it cannot be negated (no-)"),
    ({"SSL_no-enabled": "0"}, "SSL_no-enabled='0': a negated boolean (no-) takes no value"),
])
def test_each_refused_negation_in_its_whole_words(environ, words):
    with pytest.raises(ValueError) as refused:
        ssl_variables(environ)
    assert str(refused.value) == words


@pytest.mark.parametrize("environ, pairs", [
    ({"SSL_KEY_FILE": "/a.key", "LIBPROCESS_SSL_KEY_FILE": "/b.key"}, [("SSL_KEY_FILE", "LIBPROCESS_SSL_KEY_FILE")]),
    ({"SSL_KEY_FILE": "/a.key", "LIBPROCESS_SSL_KEY_FILE": "/a.key"}, []),  # the same value: no warning
    ({"SSL_ENABLED": "true", "LIBPROCESS_SSL_ENABLED": "1"}, [("SSL_ENABLED", "LIBPROCESS_SSL_ENABLED")]),  # as text
    ({"SSL_ca_file": "/a", "LIBPROCESS_SSL_CA_FILE": "/b", "SSL_CIPHERS": "x"},
     [("SSL_ca_file", "LIBPROCESS_SSL_CA_FILE")]),  # a name in any case after the prefix
    ({"SSL_CIPHERS": "a", "SSL_ciphers": "b", "LIBPROCESS_SSL_CIPHERS": "b"}, []),  # each prefix's winner compared
    ({"SSL_no-verify_cert": "x", "LIBPROCESS_SSL_no-verify_cert": ""},
     [("SSL_no-verify_cert", "LIBPROCESS_SSL_no-verify_cert")]),  # no-NAME: a name of its own
    ({"SSL_VERIFY_CERT": "true", "LIBPROCESS_SSL_no-verify_cert": ""}, []),  # two names (load refuses them)
    ({"SSL_ZZZ": "a", "LIBPROCESS_SSL_ZZZ": "b"}, []),  # not a flag: not extracted
])
def test_a_flag_both_prefixes_set_to_two_values_is_a_mismatch_as_libprocess_finds_one(environ, pairs):
    """openssl.cpp reinitialize(): each SSL_ flag that LIBPROCESS_SSL_ sets to another value
    (the two maps stout's extract() made, compared by name) is a warning; the latter wins."""
    assert ssl_mismatches(environ) == pairs


def test_the_executor_warns_of_a_mismatch_naming_both_variables_and_uses_libprocess_one(caplog):
    environ = {"SSL_ENABLED": "1", "LIBPROCESS_SSL_ENABLED": "false", "SSL_CERT_FILE": "/etc/ssl/ca-bundle.pem",
               "LIBPROCESS_SSL_CERT_FILE": "/srv/agent.pem", "MESOS_AGENT_ENDPOINT": "10.0.0.5:5051"}
    settings = ExecutorSettings(agent_endpoint="10.0.0.5:5051", framework_id="f", executor_id="e", sandbox="/")
    with caplog.at_level(logging.WARNING, logger="executor.mesos.process"):
        route = _route(settings, environ)
    assert route.tls is None  # LIBPROCESS_SSL_ENABLED=false won
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2, lines  # one line a pair
    assert "SSL_CERT_FILE" in lines[0] and "LIBPROCESS_SSL_CERT_FILE" in lines[0]
    assert "used=LIBPROCESS_SSL_CERT_FILE" in lines[0] and "used=LIBPROCESS_SSL_ENABLED" in lines[1]
    assert not any(value in "".join(lines) for value in ("/etc/ssl", "/srv/agent.pem", "false"))  # no value
