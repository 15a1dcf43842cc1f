"""The announcer's settings: Aurora's --announcer-* flags, the auth file, `stoker run --announce`."""
from __future__ import annotations

import argparse
import json

import pytest

from config.announcer import AnnouncerSpec, node_name_ok, parse_ensemble, parse_serverset_path
from config.argdecl import add_arguments
from config.errors import SettingsError
from config.executorsettings import ExecutorSettings
from config.settings import RunSettings
from config.words import quoted
from config.zookeeper import (
    AnnouncerSettings,
    ZkAccess,
    ZkAuth,
    ZkCredential,
    ZkPermissions,
    parse_zk_auth,
)

AGENT_ENV = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "fw-1",
             "MESOS_EXECUTOR_ID": "ex-1"}

# Aurora's own example (examples/vagrant/config/announcer-auth.json in its tree).
AURORA_EXAMPLE = {
    "auth": [{"scheme": "digest", "credential": "user:pass"}],
    "acl": [{"scheme": "digest", "credential": "user:pass",
             "permissions": {"read": True, "create": True, "delete": True, "write": True}},
            {"scheme": "world", "credential": "anyone", "permissions": {"read": True, "delete": True}}],
}


def test_aurora_example_auth_file_parses():
    auth = parse_zk_auth(json.dumps(AURORA_EXAMPLE), "auth.json")
    assert auth == ZkAuth(
        source="auth.json",
        auth=(ZkCredential("digest", "user:pass"),),
        acl=(ZkAccess("digest", "user:pass", ZkPermissions(read=True, write=True, create=True, delete=True)),
             ZkAccess("world", "anyone", ZkPermissions(read=True, delete=True))))
    assert "pass" not in repr(auth)  # credentials never reach a log line through a repr


def test_both_lists_are_optional():
    assert parse_zk_auth("{}", "a.json") == ZkAuth(source="a.json")


@pytest.mark.parametrize("doc,message", [
    ("not json", "a.json: not JSON: "),
    ("[]", "a.json: the file: must be a JSON object, not list"),
    ({"auths": []}, "a.json: the file: unknown field 'auths' (known: acl, auth)"),
    ({"auth": {}}, "a.json: auth: must be a list, not dict"),
    ({"acl": "world"}, "a.json: acl: must be a list, not str"),
    ({"auth": [{"scheme": "digest"}]}, "a.json: auth[0].credential: is required"),
    ({"auth": [{"scheme": "", "credential": "x:y"}]}, "a.json: auth[0].scheme: must be a non-empty string"),
    ({"auth": [{"scheme": "digest", "credential": 7}]}, "a.json: auth[0].credential: must be a non-empty string"),
    ({"auth": [{"scheme": "digest", "credential": "x:y", "extra": 1}]},
     "a.json: auth[0]: unknown field 'extra' (known: credential, scheme)"),
    ({"acl": [{"scheme": "world", "credential": "anyone"}]}, "a.json: acl[0].permissions: is required"),
    ({"acl": [{"scheme": "world", "credential": "anyone", "permissions": {"read": "yes"}}]},
     "a.json: acl[0].permissions.read: 'yes' is not true or false"),
    ({"acl": [{"scheme": "world", "credential": "anyone", "permissions": {"execute": True}}]},
     "a.json: acl[0].permissions: unknown field 'execute' (known: admin, create, delete, read, write)"),
    ({"acl": [{"scheme": "digest", "credential": "no-colon-s3cret", "permissions": {}}]},
     "a.json: acl[0].credential: a digest credential must be USER:PASSWORD (exactly one ':')"),
])
def test_a_bad_auth_file_names_the_file_and_the_field(doc, message):
    with pytest.raises(ValueError) as info:
        parse_zk_auth(doc if isinstance(doc, str) else json.dumps(doc), "a.json")
    assert str(info.value).startswith(message), str(info.value)
    assert "s3cret" not in str(info.value)


SASL_S3CRET = {"scheme": "sasl", "credential": "user:s3cret"}


@pytest.mark.parametrize("auth,message", [
    ([{"scheme": "sasl", "credential": "no-colon-s3cret"}],
     "a.json: auth[0].credential: a sasl credential must be USER:PASSWORD (exactly one ':')"),
    ([SASL_S3CRET, {"scheme": "digest", "credential": "u:p"}, SASL_S3CRET],
     "a.json: auth[2].scheme: a second sasl entry (one SASL login per session)"),
])
@pytest.mark.filterwarnings("ignore:Passing SASL configuration:DeprecationWarning")
def test_an_auth_file_zookeepers_client_would_refuse_is_refused_at_start_up(auth, message):
    """kazoo refuses these logins (ValueError, ConfigurationError) as the session is made,
    which was as the task joined: an internal error failing it, a traceback in the log."""
    from kazoo.client import KazooClient

    with pytest.raises(ValueError) as info:
        parse_zk_auth(json.dumps({"auth": auth}), "a.json")
    assert str(info.value) == message and "s3cret" not in str(info.value)
    with pytest.raises(Exception):  # noqa: B017 (kazoo's own refusal, whichever class it is)
        KazooClient(hosts="127.0.0.1:1", auth_data=[(a["scheme"], a["credential"]) for a in auth])


def test_a_sasl_login_without_pure_sasl_is_refused_at_start_up(tmp_path):
    """kazoo's connection thread died at the first connection without it (a traceback; the
    task failed only at its first announcement's bound)."""
    import importlib.util

    if importlib.util.find_spec("puresasl") is not None:
        pytest.skip("pure-sasl is installed here: a sasl login is taken")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auth": [SASL_S3CRET]}))
    with pytest.raises(SettingsError) as info:
        executor_settings(["--announcer-zookeeper-auth-config", str(auth_file)])
    assert info.value.problems == (
        f"--announcer-zookeeper-auth-config='{auth_file}': a sasl login needs the pure-sasl package, which "
        "this installation lacks (pip install pure-sasl), or a digest one instead",)


@pytest.mark.parametrize("text", ["zk1:2181", "zk1:2181,zk2:2182,zk3", "127.0.0.1:2181/chroot/path",
                                  "[::1]:2181", " zk1:2181 ", "[::ffff:10.0.0.1]:2181,[fe80::1]"])
def test_ensembles(text):
    assert parse_ensemble(text) == text.strip()


@pytest.mark.parametrize("text,ensemble", [("zk1:2181 , zk2:2182", "zk1:2181,zk2:2182"),
                                           (" zk1 ,zk2:1/chroot", "zk1,zk2:1/chroot")])
def test_an_ensembles_blanks_around_a_host_are_taken_out(text, ensemble):
    """kazoo refuses `zk1:2181 ,...` (port '2181 '): it did so as the task joined, an internal error."""
    from kazoo.hosts import collect_hosts

    assert parse_ensemble(text) == ensemble
    collect_hosts(ensemble)  # kazoo takes it


@pytest.mark.parametrize("text", ["[fe80::1%eth0]:2181", "[fe80::1%eth0]", "[fe80::1%25eth0]:2181,zk2",
                                  "[fe80::1%1]:2181/chroot", "[fe80::1%br-1.v_2~x]:1"])
def test_an_ipv6_address_with_a_zone_id_is_an_ensembles_host_as_kazoo_takes_it(text):
    """kazoo takes a link-local address with its zone id (`%eth0`); the ensemble was refused.
    kazoo reads the very host written, zone id included."""
    from kazoo.hosts import collect_hosts

    assert parse_ensemble(text) == text
    hosts, _ = collect_hosts(text)
    assert hosts[0][0] == text.split("]")[0][1:]


@pytest.mark.parametrize("zone", ["a?b", "a#b", "a\u2100c", "\uff1a", "\ufe56"])
def test_a_zone_id_kazoo_refuses_at_the_join_is_refused_with_the_flag(zone):
    """A zone id with a character `urlsplit` takes for the end of the host (`?`, `#`), or
    one whose NFKC form has such a character (U+2100, a fullwidth colon): `ipaddress` took
    it, and kazoo refused the ensemble only when the task joined (the task failed)."""
    from kazoo.hosts import collect_hosts

    text = f"[fe80::1%{zone}]:2181"
    with pytest.raises(ValueError):
        collect_hosts(text)
    with pytest.raises(ValueError, match="ZooKeeper"):
        parse_ensemble(text)


@pytest.mark.parametrize("zone", ["a@b", "eth\t0", "eth\n0", " "])
def test_a_zone_id_kazoo_reads_as_another_host_is_refused(zone):
    """A zone id kazoo reads as another host: `@` a user's end (`[fe80::1%a@b]` the host
    `b]`), a tab or newline dropped (another interface), a blank stripped (`fe80::1%`).
    Each was taken, and kazoo dialled another host."""
    from kazoo.hosts import collect_hosts

    text = f"[fe80::1%{zone}]:2181"
    hosts, _ = collect_hosts(text)
    assert hosts[0][0] != f"fe80::1%{zone}"
    with pytest.raises(ValueError, match="ZooKeeper"):
        parse_ensemble(text)


@pytest.mark.parametrize("text", ["[fe80::1%e th0]:2181", "[fe80::1%a:b[c]:1", "[fe80::1%\u00e9th0]:2181"])
def test_a_zone_id_no_interface_is_named_is_refused(text):
    """A zone id of anything but letters, digits and `-._~` (RFC 6874's unreserved
    characters, which interface names are made of; Linux refuses a blank or a colon in
    one), which kazoo may take or not, is refused rather than told apart from the others."""
    with pytest.raises(ValueError, match="ZooKeeper"):
        parse_ensemble(text)


@pytest.mark.parametrize("text", ["[fe80::1%]:2181", "[1.2.3.4%eth0]:2181", "[%eth0]:2181"])
def test_a_zone_id_kazoo_refuses_is_refused(text):
    from kazoo.hosts import collect_hosts

    with pytest.raises(ValueError, match="ZooKeeper"):
        parse_ensemble(text)
    with pytest.raises(ValueError):
        collect_hosts(text)


@pytest.mark.parametrize("text", ["", "zk1:0", "zk1:65536", "zk1:abc", "zk 1:2181", "zk1:2181,", "zk1:2181/a/../b",
                                  "[1.2.3.4]:2181", "[::1::2]:2181", "[:]"])
def test_bad_ensembles(text):
    with pytest.raises(ValueError, match="ZooKeeper"):
        parse_ensemble(text)


@pytest.mark.parametrize("text,path", [("/aurora", "/aurora"), ("/aurora/", "/aurora"),
                                       ("//a//b", "/a/b"), ("/", "/")])
def test_serverset_paths_are_normalised(text, path):
    assert parse_serverset_path(text) == path


@pytest.mark.parametrize("text", ["aurora", "", "/a/./b", "/a/../b", "/a\nb", "/a\x7fb", "/a\x85b", "/a\ufffeb"])
def test_bad_serverset_paths(text):
    with pytest.raises(ValueError, match="ZooKeeper path"):
        parse_serverset_path(text)


def test_announcer_spec_from_the_jobs_plain_value():
    assert AnnouncerSpec.from_plain({"primary_port": "http", "portmap": {"aurora": "http"}}) == AnnouncerSpec()
    assert AnnouncerSpec.from_plain({"primary_port": "thrift", "portmap": {"alias": "thrift", "static": 80},
                                     "zk_path": "/my/path"}) == AnnouncerSpec(
        primary_port="thrift", portmap={"alias": "thrift", "static": "80"}, zk_path="/my/path")


# ---- the settings ----

def executor_settings(argv: list[str]) -> ExecutorSettings:
    parser = add_arguments(argparse.ArgumentParser(prog="stoker executor"), ExecutorSettings)
    return ExecutorSettings.from_args(parser.parse_args(argv), AGENT_ENV)


def test_no_ensemble_means_no_announcing():
    s = executor_settings([])
    assert (s.announcer_ensemble, s.announcer_serverset_path, s.announcer_allow_custom_serverset_path,
            s.announcer_hostname, s.announcer_zookeeper_auth_config) == (None, "/aurora", False, None, None)
    assert s.announcer is None


def test_aurora_flags(tmp_path):
    auth_file = tmp_path / "announcer-auth.json"
    auth_file.write_text(json.dumps(AURORA_EXAMPLE))
    s = executor_settings(["--announcer-ensemble", "zk1:2181,zk2:2181", "--announcer-serverset-path", "/sd/",
                           "--announcer-allow-custom-serverset-path", "--announcer-hostname", "host-7",
                           "--announcer-zookeeper-auth-config", str(auth_file)])
    assert s.announcer == AnnouncerSettings(
        ensemble="zk1:2181,zk2:2181", serverset_path="/sd", allow_custom_serverset_path=True,
        hostname="host-7", auth=parse_zk_auth(json.dumps(AURORA_EXAMPLE), str(auth_file)))


def test_bad_announcer_flags_are_named(tmp_path):
    bad_auth = tmp_path / "auth.json"
    bad_auth.write_text('{"auth": [{"scheme": "digest"}]}')
    with pytest.raises(SettingsError) as info:
        executor_settings(["--announcer-ensemble", "zk1:99999", "--announcer-serverset-path", "aurora",
                           "--announcer-zookeeper-auth-config", str(bad_auth)])
    assert info.value.problems == (
        "--announcer-ensemble='zk1:99999' is not a ZooKeeper ensemble: 'zk1:99999' is not HOST or "
        "HOST:PORT with a port in 1..65535",
        "--announcer-serverset-path='aurora' is not an absolute ZooKeeper path (it must start with /)",
        f"--announcer-zookeeper-auth-config={bad_auth}: auth[0].credential: is required",
    )


def test_a_missing_auth_file_is_named(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SettingsError) as info:
        executor_settings(["--announcer-zookeeper-auth-config", str(missing)])
    assert info.value.problems == (
        f"--announcer-zookeeper-auth-config='{missing}' cannot be read: No such file or directory",)


def test_stoker_run_announce():
    parser = add_arguments(argparse.ArgumentParser(prog="stoker run"), RunSettings)
    s = RunSettings.from_args(parser.parse_args(["job.aurora", "--announce", "127.0.0.1:2181"]), {})
    assert s.announcer == AnnouncerSettings(ensemble="127.0.0.1:2181", allow_custom_serverset_path=True)
    assert RunSettings.from_args(parser.parse_args(["job.aurora"]), {}).announcer is None
    with pytest.raises(SettingsError, match="--announce='x:y' is not a ZooKeeper ensemble"):
        RunSettings.from_args(parser.parse_args(["job.aurora", "--announce", "x:y"]), {})


def test_the_flags_are_in_the_help():
    text = add_arguments(argparse.ArgumentParser(), ExecutorSettings).format_help()
    for flag in ("--announcer-ensemble", "--announcer-serverset-path", "--announcer-allow-custom-serverset-path",
                 "--announcer-hostname", "--announcer-zookeeper-auth-config"):
        assert flag in text, flag


def test_an_auth_file_that_is_not_utf8_is_named_with_why(tmp_path):
    latin1 = tmp_path / "auth.json"
    latin1.write_bytes(b'{"auth": [{"scheme": "digest", "credential": "caf\xe9:pass"}]}')
    with pytest.raises(SettingsError) as info:
        executor_settings(["--announcer-zookeeper-auth-config", str(latin1)])
    assert info.value.problems == (
        f"--announcer-zookeeper-auth-config='{latin1}' cannot be read: 'utf-8' codec can't decode byte 0xe9 "
        "in position 49: invalid continuation byte",)


def test_a_job_s_announce_value_read_with_aurora_s_defaults():
    assert AnnouncerSpec.from_plain({}) == AnnouncerSpec(primary_port="http", portmap={"aurora": "http"}, zk_path=None)
    assert AnnouncerSpec.from_plain({"primary_port": "", "portmap": None, "zk_path": ""}) == AnnouncerSpec()
    assert AnnouncerSpec.from_plain({"primary_port": "web", "portmap": {"a": 80}, "zk_path": "/x"}) == AnnouncerSpec(
        primary_port="web", portmap={"a": "80"}, zk_path="/x")
    assert AnnouncerSpec.from_plain({"portmap": {}}).portmap == {}  # an empty map is the job's own


@pytest.mark.parametrize("text", ["", "   ", None, 2181])
def test_an_ensemble_that_is_no_text_or_blank_is_refused_naming_it(text):
    with pytest.raises(ValueError) as refused:
        parse_ensemble(text)
    assert str(refused.value) == f"{quoted(text)} is not a ZooKeeper ensemble (HOST:PORT[,HOST:PORT...])"


@pytest.mark.parametrize(("char", "ok"), [
    ("\ud7ff", True), ("\ud800", False), ("\uf8ff", False), ("\uf900", True), ("\ufff0", False), ("\x9f", False)])
def test_a_node_name_s_refused_ranges_at_their_ends(char, ok):
    assert node_name_ok(f"a{char}b") is ok


def test_a_path_with_a_bad_node_name_names_the_path_and_the_name():
    with pytest.raises(ValueError) as refused:
        parse_serverset_path("/aurora/../x")
    assert str(refused.value) == "'/aurora/../x' is not a ZooKeeper path: '..' cannot be a node name"
