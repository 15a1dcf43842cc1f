"""`healthcheck.plainhttp.load()` in fresh interpreters: `http.client` without `ssl`, and
`ssl` importable again after; nothing done with a second thread running or either module
already loaded."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)


def loaded(before: str) -> dict:
    code = textwrap.dedent(f"""
        import json, sys, threading
        {before}
        from healthcheck import plainhttp
        done = plainhttp.load()
        import http.client
        state = {{"done": done, "ssl": "ssl" in sys.modules,
                 "https": hasattr(http.client, "HTTPSConnection"),
                 "http": hasattr(http.client, "HTTPConnection")}}
        import ssl  # still importable
        state["ssl_after"] = ssl.PROTOCOL_TLS_CLIENT is not None
        print(json.dumps(state))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_single_threaded_process_loads_http_client_without_ssl_and_ssl_stays_importable():
    assert loaded("") == {"done": True, "ssl": False, "https": False, "http": True, "ssl_after": True}


@pytest.mark.parametrize("before", [
    "threading.Thread(target=threading.Event().wait, daemon=True).start()",  # a second thread
    "import ssl",
    "import http.client",
], ids=["second-thread", "ssl-loaded", "http-client-loaded"])
def test_otherwise_it_does_nothing_and_http_client_loads_as_usual(before):
    state = loaded(before)
    assert not state["done"] and state["https"] and state["http"] and state["ssl_after"]


def test_a_second_load_once_http_client_is_loaded_without_ssl_does_nothing():
    # `ssl` is still not loaded then: only `http.client` being there says it was done
    state = loaded("from healthcheck import plainhttp as first; assert first.load()")
    assert state == {"done": False, "ssl": False, "https": False, "http": True, "ssl_after": True}
