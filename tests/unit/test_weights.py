"""Weights values: local paths, URLs fetched once into the cache, offline errors within seconds."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from trainctl.errors import UserError
from trainctl.weights import cache_dir, cached_path, resolve_pretrained, resolve_weights

PAYLOAD = b"not really a pdparams file, but bytes to fetch " * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Handler.hits.append(self.path)
        if self.path == "/models/model.pdparams":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/models/short.pdparams":  # promises more than it sends
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) * 2))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.hits = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def test_url_is_fetched_once_into_the_cache(server, tmp_path):
    url = f"{server}/models/model.pdparams"
    path = resolve_pretrained(url, cache_dir=tmp_path)
    assert Path(path) == tmp_path / "model.pdparams"
    assert Path(path).read_bytes() == PAYLOAD
    assert resolve_pretrained(url, cache_dir=tmp_path) == path
    assert _Handler.hits == ["/models/model.pdparams"]  # the second call used the cache
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["model.pdparams"]


def test_incomplete_download_leaves_nothing_cached(server, tmp_path):
    with pytest.raises(UserError) as err:
        resolve_pretrained(f"{server}/models/short.pdparams", cache_dir=tmp_path)
    assert "short.pdparams" in err.value.message
    assert not (tmp_path / "short.pdparams").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_http_error_is_a_user_error(server, tmp_path):
    with pytest.raises(UserError) as err:
        resolve_pretrained(f"{server}/models/missing.pdparams", cache_dir=tmp_path)
    assert "404" in err.value.message


def test_offline_fails_fast_and_says_how_to_go_on(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/models/yolov3.pdparams"
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        resolve_pretrained(url, cache_dir=tmp_path, timeout=3)
    assert time.monotonic() - start < 5
    line = err.value.one_line()
    assert "--no-pretrained" in line and "-o pretrain_weights=" in line
    assert str(tmp_path / "yolov3.pdparams") in line  # where to place the file by hand
    assert "\n" not in line


def test_unresolvable_host_fails_within_the_timeout(tmp_path):
    start = time.monotonic()
    with pytest.raises(UserError):
        resolve_pretrained("https://no-such-host.invalid/w.pdparams", cache_dir=tmp_path, timeout=2)
    assert time.monotonic() - start < 5


def test_a_placed_file_is_used_without_network(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/models/placed.pdparams"
    (tmp_path / "placed.pdparams").write_bytes(b"x")
    assert resolve_pretrained(url, cache_dir=tmp_path) == str(tmp_path / "placed.pdparams")


def test_local_path_with_or_without_suffix(tmp_path):
    f = tmp_path / "model_final.pdparams"
    f.write_bytes(b"x")
    assert resolve_weights(str(tmp_path / "model_final")) == str(f)
    assert resolve_weights(str(f)) == str(f)


def test_missing_local_path_names_the_file(tmp_path):
    with pytest.raises(UserError) as err:
        resolve_weights(str(tmp_path / "nope"), "weights")
    assert str(tmp_path / "nope.pdparams") in err.value.message
    with pytest.raises(UserError) as err:
        resolve_pretrained(str(tmp_path / "nope"))
    assert "--no-pretrained" in err.value.one_line()


def test_empty_value_means_no_weights():
    assert resolve_pretrained("") is None
    assert resolve_pretrained(None) is None


def test_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "weights"
    assert cached_path("ppdet://models/a.pdparams") == tmp_path / "weights" / "a.pdparams"
    monkeypatch.delenv("TRAINCTL_CACHE")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "trainctl" / "weights"
