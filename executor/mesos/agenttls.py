"""TLS to the Mesos agent, as libprocess' own client speaks it (docs/mesos.md §1).

Loaded only when libprocess SSL is on (`LIBPROCESS_SSL_ENABLED`, `agentroute.py` decides):
`ssl` and OpenSSL come with it, and a plain executor never loads either.

Owns three things:
  - `tls_settings`: the LIBPROCESS_SSL_* (or deprecated SSL_*) variables read as libprocess
    reads them (3rdparty/libprocess/src/openssl.cpp), a pure function to `TlsSettings`;
  - `client_context`: the `ssl.SSLContext` libprocess would build for its client side: its
    cipher list and protocol versions (Python's defaults share no cipher with libprocess'
    TLS 1.2 defaults), its certificate, its verification; it reads the files, and a bad one
    is a ValueError naming the variable and the file;
  - `TlsConnection`: an `http.client.HTTPConnection` whose connect() wraps the TCP socket
    itself (`http.client` is loaded without `HTTPSConnection`, `healthcheck/plainhttp.py`),
    then makes the legacy hostname check; a failed handshake or check is `TlsFailed` (an
    OSError: the transport's TRANSIENT), its words saying what failed.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections.abc import Mapping

import attrs

from config.words import quoted
from executor.logs import log_event, start_thread
from executor.mesos.agentroute import libprocess_boolean, ssl_variables

logger = logging.getLogger(__name__)
DEFAULT_CIPHERS = ("AES128-SHA:AES256-SHA:RC4-SHA:DHE-RSA-AES128-SHA:DHE-DSS-AES128-SHA:"
                   "DHE-RSA-AES256-SHA:DHE-DSS-AES256-SHA")
SCHEMES = ("legacy", "openssl")
# A CA directory's entry OpenSSL opens: <subject hash>.N, a CRL <subject hash>.rN (by_dir.c)
_HASHED = re.compile(r"[0-9a-f]{8}\.r?[0-9]+")
SLOW_DNS_WARN_MS = 100  # libprocess' SLOW_DNS_WARN_THRESHOLD (openssl.cpp): slower is a warning
# libprocess' switches, oldest first, with their defaults; SSLv3 is not there: OpenSSL 3
# has none to enable (ENABLE_SSL_V3 is ignored, README "Running on Mesos").
VERSIONS = (("ENABLE_TLS_V1_0", "TLSv1", False), ("ENABLE_TLS_V1_1", "TLSv1_1", False),
            ("ENABLE_TLS_V1_2", "TLSv1_2", True), ("ENABLE_TLS_V1_3", "TLSv1_3", False))


@attrs.frozen(kw_only=True)
class TlsSettings:
    """The client's side of libprocess' SSL flags. `names` maps a text field to the variable
    that gave it (for error words); `versions`: the enabled TLS versions, oldest first."""

    cert_file: str | None = None
    key_file: str | None = None
    verify_server_cert: bool = False  # VERIFY_SERVER_CERT, VERIFY_CERT, or implied by REQUIRE_CLIENT_CERT
    require_client_cert: bool = False  # the agent's side; also changes the legacy check's leniency
    ca_file: str | None = None
    ca_dir: str | None = None
    verification_depth: int = 4  # parsed and checked; Python cannot set it (OpenSSL's 100 applies)
    hostname_validation_scheme: str = "legacy"
    verify_ipadd: bool = False
    ciphers: str = DEFAULT_CIPHERS
    ecdh_curves: str = "auto"  # the accepting side's choice; a client offers OpenSSL's groups
    versions: tuple[str, ...] = ("TLSv1_2",)
    names: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)

    def name(self, field: str) -> str:
        return self.names.get(field, "LIBPROCESS_SSL_" + field.upper())

    def describe(self) -> str:
        """How the agent's certificate is checked, for the executor's start line."""
        if not self.verify_server_cert:
            return "https (server certificate not verified)"
        against = " and ".join(p for p in (self.ca_file, self.ca_dir) if p) or "the system's CA certificates"
        check = self.hostname_validation_scheme + (" with IP address" if self.verify_ipadd else "")
        return f"https (verified against {against}, hostname check {check})"


def _boolean(given: Mapping[str, tuple[str, str]], name: str, default: bool) -> bool:
    found = given.get(name.lower())
    return default if found is None else libprocess_boolean(*found)


def _text(given: Mapping[str, tuple[str, str]], name: str, names: dict[str, str]) -> str | None:
    """Set empty is set, as in libprocess (stout's flags): a text's empty value is refused."""
    found = given.get(name.lower())
    if found is None:
        return None
    names[name.lower()] = found[0]
    return found[1]


def tls_settings(environ: Mapping[str, str]) -> TlsSettings:
    """The client's TLS settings from the agent's environment (pure; its variables found as
    `agentroute.ssl_variables` finds them); ValueError naming the variable for a value
    libprocess would refuse at its start."""
    names: dict[str, str] = {}
    given = ssl_variables(environ)
    flag = lambda name, default=False: _boolean(given, name, default)  # noqa: E731
    text = lambda name: _text(given, name, names)  # noqa: E731
    require = flag("REQUIRE_CLIENT_CERT") or flag("REQUIRE_CERT")
    verify = flag("VERIFY_SERVER_CERT") or flag("VERIFY_CERT") or require
    scheme = _or(text("HOSTNAME_VALIDATION_SCHEME"), "legacy")
    if scheme not in SCHEMES:
        raise ValueError(f"{names['hostname_validation_scheme']}={quoted(scheme)} is not legacy or openssl")
    depth_text = _or(text("VERIFICATION_DEPTH"), "4")
    if not (depth_text.isascii() and depth_text.isdigit()):
        raise ValueError(f"{names['verification_depth']}={quoted(depth_text)} is not a whole number")
    versions = tuple(version for name, version, default in VERSIONS if flag(name, default))
    flag("ENABLE_SSL_V3")  # checked, as libprocess does; OpenSSL 3 has no SSLv3 to enable
    flag("SUPPORT_DOWNGRADE")  # the accepting side's (README "Running on Mesos")
    if not versions:
        raise ValueError("every TLS version is disabled (LIBPROCESS_SSL_ENABLE_TLS_V1_0 ... _V1_3): "
                         "no handshake can succeed")
    settings = TlsSettings(
        cert_file=text("CERT_FILE"), key_file=text("KEY_FILE"), verify_server_cert=verify,
        require_client_cert=require, ca_file=text("CA_FILE"), ca_dir=text("CA_DIR"),
        verification_depth=int(depth_text), hostname_validation_scheme=scheme,
        verify_ipadd=flag("VERIFY_IPADD"), ciphers=_or(text("CIPHERS"), DEFAULT_CIPHERS),
        ecdh_curves=_or(text("ECDH_CURVES"), "auto"), versions=versions, names=names)
    _refuse_empty(settings)
    _refuse_mismatched(settings)
    return settings


def _refuse_mismatched(settings: TlsSettings) -> None:
    """A ValueError for settings libprocess would refuse together: a certificate without its
    key (or a key without its certificate), and openssl's hostname checks without IP ones."""
    if (settings.cert_file is None) != (settings.key_file is None):
        set_one, missing = ("cert_file", "KEY_FILE") if settings.key_file is None else ("key_file", "CERT_FILE")
        also = (" (SSL_CERT_FILE is also OpenSSL's CA bundle variable: libprocess reads it as "
                "its deprecated name of LIBPROCESS_SSL_CERT_FILE)" if settings.name(set_one) == "SSL_CERT_FILE" else "")
        raise ValueError(f"{settings.name(set_one)} is set but LIBPROCESS_SSL_{missing} is not: "
                         f"a client certificate needs both{also}")
    if (settings.verify_server_cert and settings.hostname_validation_scheme == "openssl"
            and not settings.verify_ipadd):
        raise ValueError(f"{settings.name('hostname_validation_scheme')}=openssl checks the agent's "
                         "IP address (the executor reaches it by address, with no DNS name), which "
                         "LIBPROCESS_SSL_VERIFY_IPADD=true allows: without it libprocess fails "
                         "every connection too")


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def _refuse_empty(settings: TlsSettings) -> None:
    """A text variable set empty: libprocess takes the empty value (and not the SSL_ one)
    and fails its start on it; the CAs' only when it verifies."""
    fields = ["cert_file", "key_file", "ciphers", "ecdh_curves"] + (
        ["ca_file", "ca_dir"] if settings.verify_server_cert else [])
    for field in fields:
        if getattr(settings, field) == "":
            raise ValueError(f"{settings.name(field)}='' is set but empty, which libprocess refuses "
                             "(an empty variable is not an unset one)")


def _no_password(asked: list[bool]) -> bytes:
    """An encrypted key: no prompt on a terminal the executor does not have (OpenSSL's
    own would read one); `asked` says the key was one."""
    asked.append(True)
    return b""


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The client context libprocess would make; ValueError naming the variable and its file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED if settings.verify_server_cert else ssl.CERT_NONE
    if settings.verify_server_cert:
        _load_cas(context, settings)
        context.check_hostname = settings.hostname_validation_scheme == "openssl"
    if settings.cert_file is not None:
        _regular(settings.name("cert_file"), settings.cert_file)
        _regular(settings.name("key_file"), settings.key_file)
        asked: list[bool] = []
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file, password=lambda: _no_password(asked))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            if asked:
                raise ValueError(f"{settings.name('key_file')}={quoted(settings.key_file or '')} is encrypted "
                                 "(it has a passphrase): the executor has no terminal to ask for it on, "
                                 "as libprocess would") from None
            raise ValueError(f"{settings.name('cert_file')}={quoted(settings.cert_file)} with "
                             f"{settings.name('key_file')}={quoted(settings.key_file)}: "
                             f"{_words(exc)}") from None
    try:
        context.set_ciphers(settings.ciphers)
    except ssl.SSLError:
        raise ValueError(f"{settings.name('ciphers')}={quoted(settings.ciphers)}: "
                         "OpenSSL knows none of these ciphers") from None
    context.minimum_version = ssl.TLSVersion[settings.versions[0]]
    context.maximum_version = ssl.TLSVersion[settings.versions[-1]]
    return context


def _load_cas(context: ssl.SSLContext, settings: TlsSettings) -> None:
    if settings.ca_file is None and settings.ca_dir is None:
        defaults = ssl.get_default_verify_paths()  # its cafile: None unless os.path.isfile
        cafile = os.environ.get(defaults.openssl_cafile_env, defaults.openssl_cafile)
        _regular(defaults.openssl_cafile_env, cafile,
                 " (OpenSSL's CA bundle, used when no LIBPROCESS_SSL_CA_FILE or CA_DIR is set)")
        context.set_default_verify_paths()  # honours SSL_CERT_FILE and SSL_CERT_DIR
        return
    if settings.ca_file is not None:
        _regular(settings.name("ca_file"), settings.ca_file)
    if settings.ca_dir is not None and not os.path.isdir(settings.ca_dir):
        raise ValueError(f"{settings.name('ca_dir')}={quoted(settings.ca_dir)} is not a directory")
    unsafe = ca_dir_unsafe(settings)
    if unsafe:
        raise ValueError(unsafe)
    try:
        context.load_verify_locations(settings.ca_file, settings.ca_dir)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{settings.name('ca_file')}={quoted(settings.ca_file)}: {_words(exc)}") from None


def _regular(variable: str, path: str | None, what: str = "") -> None:
    """ValueError when `path` exists and is not a regular file: OpenSSL would open a FIFO
    and wait for a writer for ever, the executor's start with it. A missing file or a
    directory is left to OpenSSL's own words."""
    if path and _may_block(path):
        raise ValueError(f"{variable}={quoted(path)} is not a regular file{what}: "
                         "opening it could block for ever")


def _may_block(path: str) -> bool:
    """`path` (a link: what it names, as OpenSSL opens it) is there and is neither a regular
    file nor a directory: a FIFO, whose open waits for a writer, or a device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def ca_dir_unsafe(settings: TlsSettings) -> str | None:
    """Why the CA directory could hold a handshake, None if it cannot: OpenSSL opens its
    `<subject hash>.N` entries (`.rN`: CRLs) during the handshake, as it looks an issuer up,
    and a FIFO there would wait for a writer for ever, a device (/dev/zero) be read for ever.
    Looked at when the context is made and before each handshake (the directory is read
    lazily, as libprocess reads it: a CA added later is used)."""
    if not settings.verify_server_cert or not settings.ca_dir:
        return None
    try:
        entries = os.scandir(settings.ca_dir)
    except OSError:  # gone: OpenSSL finds nothing there
        return None
    with entries:
        for entry in entries:
            if _HASHED.fullmatch(entry.name) and _may_block(entry.path):
                return (f"{settings.name('ca_dir')}={quoted(settings.ca_dir)} holds {entry.name}, which is not "
                        "a regular file: OpenSSL would open it during a handshake, which could block for ever")
    return None


def _words(exc: BaseException) -> str:
    """An ssl or file error in words: "certificate verify failed: unable to get local issuer
    certificate", "no such file", "sslv3 alert handshake failure"."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _guess(exc: BaseException, settings: TlsSettings) -> str:
    """What the agent's bare "handshake failure" alert (TLS 1.2) most likely means."""
    if "HANDSHAKE_FAILURE" not in (getattr(exc, "reason", None) or ""):
        return ""
    unset = ", or requires a client certificate and LIBPROCESS_SSL_CERT_FILE is not set"
    return f" (the agent shares no cipher with {settings.name('ciphers')}{unset if settings.cert_file is None else ''})"


class TlsFailed(OSError):
    """The handshake with the agent, or the legacy check of its certificate, failed."""


def legacy_check(cert: Mapping, ip: str, hostname: str | None, settings: TlsSettings) -> str | None:
    """libprocess' 'legacy' check of a verified certificate (openssl.cpp, verify()): None when
    it passes, else why not. `hostname`: the agent's IP's reverse DNS name, None if none."""
    if not settings.verify_ipadd and hostname is None:
        # libprocess' own leniency: nothing to compare, accepted unless client certs are required
        return "Cannot verify peer certificate: peer hostname unknown" if settings.require_client_cert else None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS" and hostname is not None and value == hostname:
            return None
        if kind == "IP Address" and settings.verify_ipadd and _same_ip(value, ip):
            return None
    if hostname is not None:
        names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        if names:
            if names[0] == hostname:
                return None
            return f"Presented Certificate Name: {names[0]} does not match peer hostname name: {hostname}"
    details = ([f"hostname {hostname}"] if hostname is not None else []) + [f"IP {ip}"]
    return f"Could not verify presented certificate with {', '.join(details)}"


def _same_ip(a: str, b: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            if socket.inet_pton(family, a.strip()) == socket.inet_pton(family, b):
                return True
        except OSError:
            continue
    return False


def reverse_name(ip: str) -> str | None:
    """The reverse DNS name of `ip`, as libprocess' legacy check looks it up; None if none."""
    try:
        return socket.getnameinfo((ip, 0), socket.NI_NAMEREQD)[0]
    except OSError:
        return None


class ReverseNames:
    """The agent's reverse DNS names, looked up once per address, each in a thread of its
    own so that a slow or stuck resolver holds a connection no longer than its timeout:
    libprocess looks up on every connection, on its event loop. A name found is kept for
    good; a lookup that found none is made again next time. A lookup slower than libprocess'
    100 ms is a WARNING, as in libprocess, once per address (libprocess: per connection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lookups: dict[str, tuple[threading.Event, list[str | None]]] = {}
        self._warned: set[str] = set()

    def name(self, ip: str, timeout_secs: float) -> str | None:
        """`ip`'s name, None if it has none; TlsFailed when it takes more than `timeout_secs`
        (the next call waits for the same lookup)."""
        with self._lock:
            lookup = self._lookups.get(ip)
            if lookup is None:
                lookup = self._lookups[ip] = (threading.Event(), [])
                try:
                    start_thread(threading.Thread(target=self._look_up, args=(ip, *lookup), daemon=True,
                                                  name="reverse-dns"))
                except RuntimeError as exc:  # no thread to be had (NoRoomForThread too)
                    del self._lookups[ip]
                    raise TlsFailed(f"reverse DNS lookup of {ip}: {exc}") from None
        done, found = lookup
        if not done.wait(max(timeout_secs, 0.0)):
            raise TlsFailed(f"reverse DNS lookup of {ip} took more than {timeout_secs:.1f} s "
                            "(the legacy hostname check needs it; it goes on, for the next connection)")
        return found[0]

    def _look_up(self, ip: str, done: threading.Event, found: list[str | None]) -> None:
        started = time.monotonic()
        found.append(reverse_name(ip))
        took_ms = (time.monotonic() - started) * 1000
        with self._lock:
            if found[0] is None:
                del self._lookups[ip]  # (put there before this thread started)
            warn = took_ms > SLOW_DNS_WARN_MS and ip not in self._warned
            if warn:
                self._warned.add(ip)
        if warn:  # before the waiting connections go on: their lines come after it (a test read
            # the log once its connection was done, and the warning, logged after, was not there yet)
            log_event(logger, logging.WARNING, "agent_reverse_dns_slow", address=ip, took_ms=round(took_ms),
                      threshold_ms=SLOW_DNS_WARN_MS, name=found[0],
                      why="the legacy hostname check of the agent's certificate waits for it")
        done.set()


@attrs.frozen
class AgentTls:
    """What every TLS connection to the agent shares: the settings and their context."""

    settings: TlsSettings
    context: ssl.SSLContext
    names: ReverseNames = attrs.field(factory=ReverseNames, eq=False, repr=False)

    @classmethod
    def load(cls, settings: TlsSettings) -> AgentTls:
        return cls(settings, client_context(settings))


class TlsConnection(http.client.HTTPConnection):
    """An HTTPConnection over TLS, the handshake and the checks done in connect()."""

    def __init__(self, host: str, port: int, timeout: float, tls: AgentTls) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = tls
        self._connect_secs = timeout  # the connect's, the handshake's and the name lookup's

    def connect(self) -> None:
        deadline = time.monotonic() + self._connect_secs
        unsafe = ca_dir_unsafe(self._tls.settings)
        if unsafe:
            raise TlsFailed(f"TLS handshake with {self.host}:{self.port} failed: {unsafe}")
        super().connect()  # TCP, TCP_NODELAY
        plain, self.sock = self.sock, None
        why: str | None
        try:
            # the IP as the name: no SNI for it, and the 'openssl' scheme's IP check
            self.sock = self._tls.context.wrap_socket(plain, server_hostname=self.host)
        except (ssl.SSLError, OSError) as exc:
            why = _words(exc) + _guess(exc, self._tls.settings)
        else:
            settings = self._tls.settings
            why = None
            if settings.verify_server_cert and settings.hostname_validation_scheme == "legacy":
                try:
                    hostname = self._tls.names.name(self.host, deadline - time.monotonic())
                except TlsFailed as exc:
                    why = str(exc)
                else:
                    why = legacy_check(self.sock.getpeercert() or {}, self.host, hostname, settings)
        if why is not None:
            plain.close()
            self.close()
            raise TlsFailed(f"TLS handshake with {self.host}:{self.port} failed: {why}")

    def still_open(self) -> bool:
        """Whether this idle connection, its socket readable, is still the agent's: what came
        was records that carry no data, read now (TLS 1.3's session tickets, sent after the
        handshake: a connection made ahead of its first call has them unread); not when the
        agent closed it or sent bytes no call asked for."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)
        return False
