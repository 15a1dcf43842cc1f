"""How `stoker executor` reaches the agent, from the agent's environment: the route
(`executor/mesos/agentroute.py`) and libprocess' SSL variables (`executor/mesos/agenttls.py`'s
`tls_settings`), as the C++ executor library and libprocess read them."""
from __future__ import annotations

import pytest

from executor.mesos.agentroute import AgentRoute, agent_route, split_endpoint
from executor.mesos.agenttls import DEFAULT_CIPHERS, TlsSettings, legacy_check, tls_settings

ENDPOINT = "10.0.0.5:5051"
PID = {"MESOS_SLAVE_PID": "slave(1)@10.0.0.5:5051"}
ON = {"LIBPROCESS_SSL_ENABLED": "true"}


def route(**environ: str) -> AgentRoute:
    return agent_route(ENDPOINT, environ, "/var/lib/mesos/sandbox")


# ---- the route ----

def test_without_ssl_or_a_socket_it_is_plain_http_on_the_endpoint():
    plain = route(**PID)
    assert (plain.url, plain.describe(), plain.tls) == ("http://10.0.0.5:5051/api/v1/executor", "http", None)
    assert route(LIBPROCESS_SSL_ENABLED="false", SSL_ENABLED="true").tls is None  # LIBPROCESS_ wins


@pytest.mark.parametrize("environ", [{"LIBPROCESS_SSL_ENABLED": "1"}, {"SSL_ENABLED": "true"},
                                     {"LIBPROCESS_SSL_ENABLED": "", "SSL_ENABLED": "1"}])
def test_ssl_enabled_by_either_variable_makes_it_https(environ):
    tls = route(**environ)
    assert tls.url == "https://10.0.0.5:5051/api/v1/executor" and tls.tls == TlsSettings()
    assert tls.describe() == "https (server certificate not verified)"


def test_the_domain_socket_wins_over_tls_and_its_path_starts_with_the_agent_s_id():
    unix = route(MESOS_DOMAIN_SOCKET="/run/mesos/agent.sock", **PID, **ON)
    assert (unix.socket_path, unix.path, unix.tls) == ("/run/mesos/agent.sock", "/slave(1)/api/v1/executor", None)
    assert unix.describe() == "unix socket /run/mesos/agent.sock"
    assert unix.url == "http+unix://%2Frun%2Fmesos%2Fagent.sock/slave(1)/api/v1/executor"


def test_a_socket_path_of_108_bytes_is_used_relative_to_the_working_directory():
    cwd = "/var/lib/mesos/slaves/" + "s" * 80
    path = cwd + "/agent.sock"
    assert len(path) >= 108
    assert agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": path, **PID}, cwd).socket_path == "./agent.sock"
    short = "/r/" + "a" * 104  # 107 bytes: as it is
    assert agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": short, **PID}, "/elsewhere").socket_path == short
    assert agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": short + "a", **PID}, "/r").socket_path \
        == "./" + "a" * 105
    with pytest.raises(ValueError, match=r"MESOS_DOMAIN_SOCKET='/r/a+' is 108 bytes long, and 112 relative "
                                         r"to '/elsewhere': a unix socket's path must be shorter than 108"):
        agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": short + "a", **PID}, "/elsewhere")


@pytest.mark.parametrize("pid", [None, "", "10.0.0.5:5051", "@10.0.0.5:5051"])
def test_the_socket_needs_the_agent_s_pid_for_its_path(pid):
    environ = {"MESOS_DOMAIN_SOCKET": "/run/agent.sock"} | ({"MESOS_SLAVE_PID": pid} if pid is not None else {})
    with pytest.raises(ValueError, match="MESOS_SLAVE_PID=.* is not the agent's ID@IP:PORT"):
        agent_route(ENDPOINT, environ, "/")


@pytest.mark.parametrize("environ, words", [
    ({"LIBPROCESS_SSL_ENABLED": "yes"}, "LIBPROCESS_SSL_ENABLED='yes' is not true, false, 1 or 0"),
    ({"SSL_ENABLED": "on"}, "SSL_ENABLED='on' is not true, false, 1 or 0"),
])
def test_a_switch_libprocess_would_refuse_is_an_error_naming_it(environ, words):
    with pytest.raises(ValueError, match=words):
        route(**environ)


def test_an_endpoint_that_is_not_host_port_names_the_variable():
    with pytest.raises(ValueError, match="MESOS_AGENT_ENDPOINT: agent endpoint 'x' is not host:port"):
        agent_route("x", {}, "/")


# ---- libprocess' SSL variables ----

def test_the_defaults_are_libprocess_own():
    settings = tls_settings({})
    assert settings == TlsSettings(cert_file=None, key_file=None, verify_server_cert=False,
                                   require_client_cert=False, ca_file=None, ca_dir=None, verification_depth=4,
                                   hostname_validation_scheme="legacy", verify_ipadd=False,
                                   ciphers=DEFAULT_CIPHERS, ecdh_curves="auto", versions=("TLSv1_2",))
    assert "AES128-SHA" in DEFAULT_CIPHERS and "RC4-SHA" in DEFAULT_CIPHERS


def test_every_variable_is_read_and_the_libprocess_prefix_wins():
    environ = {"LIBPROCESS_SSL_CERT_FILE": "/c.pem", "SSL_CERT_FILE": "/ignored.pem", "SSL_KEY_FILE": "/k.pem",
               "SSL_VERIFY_SERVER_CERT": "1", "LIBPROCESS_SSL_CA_FILE": "/ca.pem", "SSL_CA_DIR": "/cas",
               "LIBPROCESS_SSL_VERIFICATION_DEPTH": "9", "SSL_HOSTNAME_VALIDATION_SCHEME": "openssl",
               "LIBPROCESS_SSL_VERIFY_IPADD": "true", "SSL_CIPHERS": "ECDHE-RSA-AES128-GCM-SHA256",
               "LIBPROCESS_SSL_ECDH_CURVES": "P-256", "LIBPROCESS_SSL_ENABLE_TLS_V1_3": "1",
               "SSL_ENABLE_TLS_V1_1": "true", "LIBPROCESS_SSL_ENABLE_TLS_V1_2": "false"}
    settings = tls_settings(environ)
    assert settings == TlsSettings(cert_file="/c.pem", key_file="/k.pem", verify_server_cert=True,
                                   ca_file="/ca.pem", ca_dir="/cas", verification_depth=9,
                                   hostname_validation_scheme="openssl", verify_ipadd=True,
                                   ciphers="ECDHE-RSA-AES128-GCM-SHA256", ecdh_curves="P-256",
                                   versions=("TLSv1_1", "TLSv1_3"))
    assert settings.name("cert_file") == "LIBPROCESS_SSL_CERT_FILE" and settings.name("key_file") == "SSL_KEY_FILE"
    assert settings.describe() == "https (verified against /ca.pem and /cas, hostname check openssl with IP address)"


@pytest.mark.parametrize("variable", ["LIBPROCESS_SSL_VERIFY_SERVER_CERT", "SSL_VERIFY_CERT",
                                      "LIBPROCESS_SSL_VERIFY_CERT", "SSL_VERIFY_SERVER_CERT"])
def test_verify_cert_is_an_alias_of_verify_server_cert(variable):
    assert tls_settings({variable: "true"}).verify_server_cert
    assert not tls_settings({variable: "0"}).verify_server_cert


@pytest.mark.parametrize("variable", ["LIBPROCESS_SSL_REQUIRE_CLIENT_CERT", "SSL_REQUIRE_CERT"])
def test_requiring_client_certificates_implies_verifying_the_server_s(variable):
    settings = tls_settings({variable: "1", "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "false"})
    assert settings.verify_server_cert and settings.require_client_cert
    assert settings.describe() == "https (verified against the system's CA certificates, hostname check legacy)"


@pytest.mark.parametrize("environ, words", [
    ({"LIBPROCESS_SSL_VERIFY_CERT": "yes"}, r"LIBPROCESS_SSL_VERIFY_CERT='yes' is not true, false, 1 or 0"),
    ({"SSL_HOSTNAME_VALIDATION_SCHEME": "strict"}, r"SSL_HOSTNAME_VALIDATION_SCHEME='strict' is not legacy or openssl"),
    ({"LIBPROCESS_SSL_VERIFICATION_DEPTH": "-1"}, r"LIBPROCESS_SSL_VERIFICATION_DEPTH='-1' is not a whole number"),
    ({"LIBPROCESS_SSL_CERT_FILE": "/c.pem"},
     r"LIBPROCESS_SSL_CERT_FILE is set but LIBPROCESS_SSL_KEY_FILE is not: a client certificate needs both"),
    ({"SSL_KEY_FILE": "/k.pem"}, r"SSL_KEY_FILE is set but LIBPROCESS_SSL_CERT_FILE is not"),
    ({"LIBPROCESS_SSL_ENABLE_TLS_V1_2": "0"}, r"every TLS version is disabled"),
    ({"LIBPROCESS_SSL_VERIFY_SERVER_CERT": "1", "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "openssl"},
     r"LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME=openssl checks the agent's IP address .* "
     r"LIBPROCESS_SSL_VERIFY_IPADD=true"),
    ({"SSL_SUPPORT_DOWNGRADE": "maybe"}, r"SSL_SUPPORT_DOWNGRADE='maybe'"),
])
def test_a_value_libprocess_refuses_is_an_error_naming_the_variable(environ, words):
    with pytest.raises(ValueError, match=words):
        tls_settings(environ)


@pytest.mark.parametrize("variable", ["LIBPROCESS_SSL_VERIFY_SERVER_CERT", "SSL_VERIFY_CERT",
                                      "LIBPROCESS_SSL_REQUIRE_CLIENT_CERT"])
def test_a_boolean_set_empty_is_true_as_stout_reads_it(variable):
    """stout's flags: a boolean given no value (`VAR=`) is true, and the LIBPROCESS_SSL_ one
    wins over the SSL_ one even so."""
    assert tls_settings({variable: "", "SSL_VERIFY_SERVER_CERT": "false"}).verify_server_cert
    assert route(LIBPROCESS_SSL_ENABLED="", SSL_ENABLED="0").tls == TlsSettings()


@pytest.mark.parametrize("variable", ["CERT_FILE", "KEY_FILE", "CIPHERS", "HOSTNAME_VALIDATION_SCHEME",
                                      "VERIFICATION_DEPTH", "ECDH_CURVES", "CA_FILE", "CA_DIR"])
def test_a_text_set_empty_is_refused_as_libprocess_refuses_it_not_read_as_unset(variable):
    """libprocess takes `VAR=` as the empty value, the SSL_ one not looked at (an empty
    CERT_FILE must not let the host's SSL_CERT_FILE CA bundle in), and refuses to start."""
    environ = {"LIBPROCESS_SSL_VERIFY_SERVER_CERT": "1", f"LIBPROCESS_SSL_{variable}": "",
               f"SSL_{variable}": "/etc/ssl/certs/ca-certificates.crt"}
    with pytest.raises(ValueError, match=f"LIBPROCESS_SSL_{variable}="):
        tls_settings(environ)


def test_the_openssl_scheme_without_verification_checks_nothing_and_needs_no_ipadd():
    assert tls_settings({"LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "openssl"}).describe() \
        == "https (server certificate not verified)"


# ---- the legacy hostname check, after the handshake ----

AGENT = {"subject": ((("commonName", "agent-1.example"),),),
         "subjectAltName": (("DNS", "agent-1.example"), ("IP Address", "10.0.0.5"))}
CN_ONLY = {"subject": ((("commonName", "agent-1.example"),),)}
LEGACY = TlsSettings(verify_server_cert=True)
IPADD = TlsSettings(verify_server_cert=True, verify_ipadd=True)
REQUIRE = TlsSettings(verify_server_cert=True, require_client_cert=True)


@pytest.mark.parametrize("cert, hostname, settings", [
    (AGENT, "agent-1.example", LEGACY),  # a DNS SAN equal to the reverse name
    (AGENT, None, IPADD),  # an IP SAN, with VERIFY_IPADD
    (AGENT, "elsewhere", IPADD),
    (CN_ONLY, "agent-1.example", LEGACY),  # no SAN: the common name
    (AGENT, None, LEGACY),  # libprocess' leniency: no name, no IP check, no client certs required
])
def test_the_legacy_check_passes(cert, hostname, settings):
    assert legacy_check(cert, "10.0.0.5", hostname, settings) is None


@pytest.mark.parametrize("cert, hostname, settings, words", [
    ({"subjectAltName": (("DNS", "agent-1.example"),)}, "elsewhere", LEGACY,
     "Could not verify presented certificate with hostname elsewhere, IP 10.0.0.5"),
    (AGENT, "elsewhere", LEGACY,  # the SAN did not match: the common name must
     "Presented Certificate Name: agent-1.example does not match peer hostname name: elsewhere"),
    ({"subjectAltName": (("IP Address", "10.0.0.6"),)}, None, IPADD,
     "Could not verify presented certificate with IP 10.0.0.5"),
    (CN_ONLY, "agent-2.example", LEGACY,
     "Presented Certificate Name: agent-1.example does not match peer hostname name: agent-2.example"),
    (AGENT, None, REQUIRE, "Cannot verify peer certificate: peer hostname unknown"),
])
def test_the_legacy_check_fails_with_libprocess_words(cert, hostname, settings, words):
    assert legacy_check(cert, "10.0.0.5", hostname, settings) == words


# ---- the endpoint and the agent's id, exactly ----

@pytest.mark.parametrize("endpoint, host, port", [
    ("10.0.0.5:1", "10.0.0.5", 1), ("10.0.0.5:65535", "10.0.0.5", 65535),
    ("[fe80::1]:5051", "fe80::1", 5051), ("fe80::1:5051", "fe80::1", 5051),  # the port after the last colon
])
def test_an_endpoint_is_host_and_a_port_from_1_to_65535(endpoint, host, port):
    assert split_endpoint(endpoint) == (host, port)


@pytest.mark.parametrize("endpoint", ["10.0.0.5:0", "10.0.0.5:65536", "10.0.0.5:99999", ":5051", "5051",
                                      "10.0.0.5:", "10.0.0.5:http", "10.0.0.5:\u0665\u0660\u0665\u0661"])
def test_an_endpoint_without_a_host_or_a_port_from_1_to_65535_is_refused(endpoint):
    with pytest.raises(ValueError) as refused:
        split_endpoint(endpoint)
    assert str(refused.value) == f"agent endpoint {endpoint!r} is not host:port (a port from 1 to 65535)"


def test_a_socket_path_still_108_bytes_long_relative_to_the_working_directory_is_refused():
    cwd = "/r"
    path = cwd + "/" + "a" * 106  # 109 bytes; "./" and the 106: 108
    with pytest.raises(ValueError, match="is 109 bytes long, and 108 relative to '/r'"):
        agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": path, **PID}, cwd)
    assert agent_route(ENDPOINT, {"MESOS_DOMAIN_SOCKET": path[:-1], **PID}, cwd).socket_path == "./" + "a" * 105


@pytest.mark.parametrize("pid, path", [
    ("slave(1)@10.0.0.5:5051", "/slave(1)/api/v1/executor"),
    ("agent@x@10.0.0.5:5051", "/agent/api/v1/executor"),  # the id ends at the first @, as libprocess' UPID parse
])
def test_the_socket_s_path_starts_with_the_agent_s_id(pid, path):
    environ = {"MESOS_DOMAIN_SOCKET": "/run/agent.sock", "MESOS_SLAVE_PID": pid}
    assert agent_route(ENDPOINT, environ, "/").path == path


@pytest.mark.parametrize("pid, shown", [(None, "''"), ("", "''"), ("10.0.0.5:5051", "'10.0.0.5:5051'"),
                                        ("a/b@10.0.0.5:5051", "'a/b@10.0.0.5:5051'")])
def test_a_pid_the_socket_s_path_cannot_start_with_is_refused_in_these_words(pid, shown):
    environ = {"MESOS_DOMAIN_SOCKET": "/run/agent.sock"} | ({"MESOS_SLAVE_PID": pid} if pid is not None else {})
    with pytest.raises(ValueError) as refused:
        agent_route(ENDPOINT, environ, "/")
    assert str(refused.value) == (f"MESOS_SLAVE_PID={shown} is not the agent's ID@IP:PORT, which the unix "
                                  "socket's path (MESOS_DOMAIN_SOCKET) starts with")
