"""server.file_url(): signed, expiring URLs for local files, served over HTTP on the server's own port.

Every test runs a real server on port 0 and talks to it over raw sockets, so
that what is sent (a ``..``, a backslash, a foreign Host) is exactly what the
test wrote, with nothing normalised on the way.
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, wait_for

from igor import Config, ConfigError, IgorServer

PNG = bytes(range(256)) * 4  # 1024 bytes, every value, so a wrong slice shows


def fetch(port, target, method="GET", headers=None, host=None, timeout=5.0):
    """One HTTP/1.1 request on a fresh socket: ``(status, headers with lower-case names, body)``."""
    fields = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in fields.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        assert name.lower() not in answer, f"header {name} twice"
        answer[name.lower()] = value.strip()
    if method != "HEAD":  # a HEAD answer's Content-Length is the file's
        assert int(answer["content-length"]) == len(body)
    return int(status_line.split(" ")[1]), answer, body


def target(url):
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def tree(tmp_path):
    """A root with files of several kinds, and a secret outside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(PNG)
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (root / "data.json").write_text('{"x": 1}')
    (root / "blob.unknownext").write_bytes(b"?")
    (root / "empty.txt").write_bytes(b"")
    (root / "sub" / "b.txt").write_text("bee")
    (root / "photo one é.png").write_bytes(b"spaces")
    (tmp_path / "secret.txt").write_text("SECRET")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.txt").write_text("not bee")
    return tmp_path


@pytest.fixture
def served(start_server, tree):
    return start_server(config={"file_roots": [str(tree / "root")], "token": "t"})


# -- the answers ---------------------------------------------------------------------------------


def test_get_serves_the_whole_file_with_its_headers(served, tree):
    url = served.file_url(tree / "root" / "a.png")
    assert url.startswith(f"http://127.0.0.1:{served.port}/.igor/file/0/a.png?expires=")
    status, headers, body = fetch(served.port, target(url))
    assert (status, body) == (200, PNG)
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == "1024"
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in headers
    cache, max_age = headers["cache-control"].split(", max-age=")
    assert cache == "private" and 3590 <= int(max_age) <= 3601


def test_head_answers_the_headers_only(served, tree):
    url = served.file_url(tree / "root" / "a.png")
    status, headers, body = fetch(served.port, target(url), "HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "1024" and headers["content-type"] == "image/png"
    status, headers, body = fetch(served.port, target(url), "HEAD", headers={"Range": "bytes=1-2"})
    assert (status, body, headers["content-range"]) == (206, b"", "bytes 1-2/1024")


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-9", 0, 9), ("bytes=10-", 10, 1023), ("bytes=-5", 1019, 1023), ("bytes=5-5", 5, 5),
    ("bytes=1000-5000", 1000, 1023), ("bytes=-5000", 0, 1023), ("BYTES = 3-4", 3, 4),
])
def test_a_range_is_answered_206_with_exactly_its_bytes(served, tree, spec, first, last):
    status, headers, body = fetch(served.port, target(served.file_url(tree / "root" / "a.png")),
                                  headers={"Range": spec})
    assert status == 206
    assert body == PNG[first:last + 1]
    assert headers["content-range"] == f"bytes {first}-{last}/1024"
    assert headers["content-length"] == str(last - first + 1)


@pytest.mark.parametrize("name, spec", [("a.png", "bytes=1024-"), ("a.png", "bytes=5000-6000"), ("a.png", "bytes=-0"),
                                        ("empty.txt", "bytes=0-"), ("empty.txt", "bytes=-1")])
def test_a_range_past_the_end_is_416(served, tree, name, spec):
    status, headers, body = fetch(served.port, target(served.file_url(tree / "root" / name)), headers={"Range": spec})
    size = (tree / "root" / name).stat().st_size
    assert (status, body) == (416, b"") and headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=9-3", "items=0-1", "bytes=abc", "bytes=-", "bytes=1-2-3",
                                  "bytes=+1-2", "bytes=" + "9" * 30 + "-"])
def test_several_or_malformed_ranges_get_the_whole_file(served, tree, spec):
    url = served.file_url(tree / "root" / "a.png")
    status, headers, body = fetch(served.port, target(url), headers={"Range": spec})
    assert (status, body) == (200, PNG) and "content-range" not in headers


def test_if_range_of_another_version_gets_the_whole_file(served, tree):
    path = target(served.file_url(tree / "root" / "a.png"))
    etag = fetch(served.port, path)[1]["etag"]
    assert fetch(served.port, path, headers={"Range": "bytes=0-1", "If-Range": etag})[0] == 206
    assert fetch(served.port, path, headers={"Range": "bytes=0-1", "If-Range": '"older"'})[:3:2] == (200, PNG)


@pytest.mark.parametrize("name, expected", [("a.png", "image/png"), ("clip.mp4", "video/mp4"),
                                            ("data.json", "application/json"),
                                            ("blob.unknownext", "application/octet-stream")])
def test_content_type_comes_from_the_name(served, tree, name, expected):
    status, headers, _ = fetch(served.port, target(served.file_url(tree / "root" / name)))
    assert (status, headers["content-type"]) == (200, expected)


def test_names_with_spaces_and_accents_round_trip(served, tree):
    url = served.file_url(tree / "root" / "photo one é.png")
    assert "/photo%20one%20%C3%A9.png?" in url
    assert fetch(served.port, target(url))[2] == b"spaces"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405(served, tree, method):
    status, headers, _ = fetch(served.port, target(served.file_url(tree / "root" / "a.png")), method)
    assert status == 405 and headers["allow"] == "GET, HEAD"


# -- expiry ----------------------------------------------------------------------------------------


def test_an_expired_url_is_410(served, tree):
    path = target(served.file_url(tree / "root" / "a.png", expires=60))
    served._files._clock = lambda: time.time() + 61  # the clock, not a minute's sleep
    assert fetch(served.port, path)[0] == 410


def test_a_url_stops_working_once_its_second_has_passed(served, tree):
    url = served.file_url(tree / "root" / "a.png", expires=0.01)
    deadline = int(url.split("expires=")[1].split("&")[0])
    assert fetch(served.port, target(url))[0] == 200
    wait_for(lambda: time.time() >= deadline, timeout=3, message="the URL's expiry")
    assert fetch(served.port, target(url))[0] == 410


def test_expires_takes_seconds_a_timedelta_or_a_datetime(served, tree):
    path = tree / "root" / "a.png"
    now = time.time()

    def deadline(url):
        return int(url.split("expires=")[1].split("&")[0])

    assert abs(deadline(served.file_url(path, expires=120)) - (now + 120)) <= 2
    assert abs(deadline(served.file_url(path, expires=datetime.timedelta(days=1))) - (now + 86400)) <= 2
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    assert deadline(served.file_url(path, expires=when)) == int(when.timestamp()) + 1
    for bad in (0, -1, datetime.datetime(2000, 1, 1), datetime.timedelta(0)):
        with pytest.raises(ValueError, match="future"):
            served.file_url(path, expires=bad)
    for bad in ("1h", None, float("inf"), True):
        with pytest.raises(TypeError, match="expires"):
            served.file_url(path, expires=bad)


# -- tampering and traversal ----------------------------------------------------------------------


def test_a_changed_url_is_403(served, tree):
    url = target(served.file_url(tree / "root" / "a.png"))
    path, query = url.split("?")
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = [
        f"/.igor/file/0/data.json?{query}",                    # another file of the root
        f"/.igor/file/0/sub/../a.png?{query}",
        f"{path}?expires={int(expires) + 1}&sig={sig}",        # a later expiry
        f"{path}?expires={expires}&sig={flipped}",
        f"{path}?expires={expires}&sig={sig[:-1]}",
        f"{path}?expires={expires}",
        f"{path}?sig={sig}",
        f"{path}?expires={expires}&sig={sig}&sig={sig}",
        f"{path}?expires={expires}&sig={sig}&x=1",
        f"{path}?expires=+{expires}&sig={sig}",
        f"/.igor/file/1/a.png?{query}",                         # a root that does not exist
        f"/.igor/file/00/a.png?{query}",
        f"/.igor/file/a.png?{query}",
    ]
    for bad in tampered:
        assert fetch(served.port, bad)[0] == 403, bad
    assert fetch(served.port, url)[0] == 200


@pytest.mark.parametrize("path", ["../secret.txt", "%2e%2e/secret.txt", "%2E%2E/secret.txt", "..%2fsecret.txt",
                                  "sub/../../secret.txt", "..\\secret.txt", "..%5csecret.txt",
                                  "sub%5c..%5c..%5csecret.txt", "./a.png", "sub//b.txt", "a.png%00",
                                  "%2fetc%2fpasswd", "/etc/passwd"])
def test_traversal_is_403(served, tree, path):
    query = target(served.file_url(tree / "root" / "a.png")).split("?")[1]
    assert fetch(served.port, f"/.igor/file/0/{path}?{query}")[0] == 403


def test_a_url_of_another_server_is_403(start_server, served, tree):
    other = start_server(config={"file_roots": [str(tree / "root")]})
    path = target(other.file_url(tree / "root" / "a.png"))
    assert fetch(other.port, path)[0] == 200
    assert fetch(served.port, path)[0] == 403  # each server has its own key


# -- symbolic links and a changing disk -------------------------------------------------------------


def test_a_link_out_of_the_roots_cannot_be_given_a_url(served, tree):
    os.symlink(tree / "secret.txt", tree / "root" / "out.txt")
    os.symlink(tree / "elsewhere", tree / "root" / "outdir")
    with pytest.raises(ValueError, match="not under any of the file_roots"):
        served.file_url(tree / "root" / "out.txt")
    with pytest.raises(ValueError, match="not under any of the file_roots"):
        served.file_url(tree / "root" / "outdir" / "b.txt")


def test_a_link_inside_the_root_names_its_target(served, tree):
    os.symlink(tree / "root" / "sub" / "b.txt", tree / "root" / "alias.txt")
    url = served.file_url(tree / "root" / "alias.txt")
    assert "/.igor/file/0/sub/b.txt?" in url and fetch(served.port, target(url))[2] == b"bee"


@pytest.mark.parametrize("to", ["outside", "inside"])
def test_a_file_swapped_for_a_link_after_signing_is_403(served, tree, to):
    path = tree / "root" / "sub" / "b.txt"
    url = target(served.file_url(path))
    path.unlink()
    os.symlink(tree / "secret.txt" if to == "outside" else tree / "root" / "a.png", path)
    status, _, body = fetch(served.port, url)
    assert status == 403 and b"SECRET" not in body


def test_a_folder_swapped_for_a_link_after_signing_is_403(served, tree):
    url = target(served.file_url(tree / "root" / "sub" / "b.txt"))
    (tree / "root" / "sub").rename(tree / "root" / "was-sub")
    os.symlink(tree / "elsewhere", tree / "root" / "sub")
    status, _, body = fetch(served.port, url)
    assert status == 403 and body != b"not bee"


def test_a_file_deleted_or_made_a_folder_after_signing_is_404(served, tree):
    path = tree / "root" / "sub" / "b.txt"
    url = target(served.file_url(path))
    path.unlink()
    assert fetch(served.port, url)[0] == 404
    path.mkdir()
    assert fetch(served.port, url)[0] == 404


def test_a_file_changed_after_signing_is_served_as_it_is_now(served, tree):
    path = tree / "root" / "sub" / "b.txt"
    url = target(served.file_url(path))
    path.write_text("new contents")
    assert fetch(served.port, url)[2] == b"new contents"


# -- what file_url() refuses ----------------------------------------------------------------------


def test_a_path_outside_the_roots_raises_naming_them(served, tree):
    root = str((tree / "root").resolve())
    for path in (tree / "secret.txt", tree / "root" / ".." / "secret.txt", "/etc/passwd"):
        with pytest.raises(ValueError) as raised:
            served.file_url(path)
        assert "not under any of the file_roots" in str(raised.value) and root in str(raised.value)


def test_a_missing_file_or_a_folder_raises(served, tree):
    with pytest.raises(FileNotFoundError, match="no such file") as raised:
        served.file_url(tree / "root" / "nope.png")
    assert str((tree / "root").resolve()) in str(raised.value)
    for folder in (tree / "root", tree / "root" / "sub"):
        with pytest.raises(ValueError, match="not a regular file"):
            served.file_url(folder)
    with pytest.raises(TypeError, match="path"):
        served.file_url(42)


def test_no_roots_means_no_urls(start_server, tree):
    server = start_server()
    with pytest.raises(ValueError, match="'file_roots' is empty"):
        server.file_url(tree / "root" / "a.png")


def test_file_url_before_start_raises(tree):
    server = IgorServer(port=0, file_roots=[tree / "root"])
    with pytest.raises(RuntimeError, match="started server"):
        server.file_url(tree / "root" / "a.png")


def test_several_roots_each_serve_their_files(start_server, tree):
    server = start_server(config={"file_roots": [tree / "root" / "sub", tree / "elsewhere"]})
    first, second = server.file_url(tree / "root" / "sub" / "b.txt"), server.file_url(tree / "elsewhere" / "b.txt")
    assert "/.igor/file/0/b.txt?" in first and "/.igor/file/1/b.txt?" in second
    assert fetch(server.port, target(first))[2] == b"bee"
    assert fetch(server.port, target(second))[2] == b"not bee"


# -- config -----------------------------------------------------------------------------------------


def test_file_roots_config(tree, monkeypatch):
    assert Config().file_roots == ()
    monkeypatch.chdir(tree)
    # Relative folders are resolved against the working directory when the config is made, links too.
    os.symlink(tree / "root", tree / "link-to-root")
    config = Config(file_roots=["root", tree / "elsewhere", "link-to-root"])
    real = str((tree / "root").resolve())
    assert config.file_roots == (real, str((tree / "elsewhere").resolve()), real)
    monkeypatch.chdir(tree / "elsewhere")
    assert Config.from_mapping(config).file_roots == config.file_roots


@pytest.mark.parametrize("value, message", [
    ("root", "not one path: write"), (b"root", "not one path"), ({"root": 1}, "must be a list of folders"),
    (["no/such/folder"], "not an existing folder"), (["root/a.png"], "not an existing folder"),
    ([3], "folder paths"), ([""], "folder paths"), ([b"root"], "folder paths"), (None, "must be a list"),
])
def test_file_roots_must_be_a_list_of_folders(tree, monkeypatch, value, message):
    monkeypatch.chdir(tree)
    with pytest.raises(ConfigError, match=message):
        Config(file_roots=value)


def test_the_legacy_file_server_points_to_file_roots(tree):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Config.from_mapping({"file_server_config": {"enable": True, "port": 0, "root_directory": str(tree)}})
    assert any("file_roots" in str(w.message) and "server.file_url" in str(w.message) for w in caught)


# -- who may fetch ----------------------------------------------------------------------------------


def test_a_foreign_host_is_403(served, tree):
    path = target(served.file_url(tree / "root" / "a.png"))
    assert fetch(served.port, path, host="evil.example")[0] == 403
    assert fetch(served.port, path, host=f"evil.example:{served.port}")[0] == 403
    assert fetch(served.port, path, host=f"localhost:{served.port}")[0] == 200


def test_an_allowed_origin_is_echoed_never_a_star(served, tree):
    path = target(served.file_url(tree / "root" / "a.png"))
    for origin in (f"http://localhost:{served.port}", "file://", "http://127.0.0.1:3000"):
        status, headers, _ = fetch(served.port, path, headers={"Origin": origin})
        assert status == 200 and headers["access-control-allow-origin"] == origin, origin
        assert headers["vary"] == "Origin" and "Content-Range" in headers["access-control-expose-headers"]
    for origin in ("https://evil.example", "null", "http://localhost.evil.example:80"):
        status, headers, body = fetch(served.port, path, headers={"Origin": origin})
        assert status == 403 and "access-control-allow-origin" not in headers and body != PNG, origin


def test_without_a_token_only_the_servers_own_origin_may_fetch(start_server, tree):
    server = start_server(config={"file_roots": [tree / "root"]})
    path = target(server.file_url(tree / "root" / "a.png"))
    assert fetch(server.port, path, headers={"Origin": f"http://localhost:{server.port}"})[0] == 200
    assert fetch(server.port, path, headers={"Origin": "http://localhost:3000"})[0] == 403


def test_an_origin_wildcard_still_echoes_the_origin(start_server, tree):
    server = start_server(config={"file_roots": [tree / "root"], "allowed_origins": ["*"], "token": "t"})
    path = target(server.file_url(tree / "root" / "a.png"))
    headers = fetch(server.port, path, headers={"Origin": "https://anything.example"})[1]
    assert headers["access-control-allow-origin"] == "https://anything.example"


def test_the_token_is_not_needed_but_the_websocket_still_wants_it(served, tree):
    assert served.token == "t"
    assert fetch(served.port, target(served.file_url(tree / "root" / "a.png")))[0] == 200
    assert "token" not in served.file_url(tree / "root" / "a.png")


# -- bounds ------------------------------------------------------------------------------------------


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_peer_that_stops_reading_is_cut_off(start_server, tree):
    big = _sparse(tree / "root" / "big.bin", 256 * 1024 * 1024)
    server = start_server(config={"file_roots": [tree / "root"], "send_timeout": 0.5})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.sendall(f"GET {target(server.file_url(big))} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: server.stats()["file_answers"], message="the answer to start")
        assert server.stats()["pending_handshakes"] == 0  # it left the handshake table for the transfers
        wait_for(lambda: not server.stats()["file_answers"], timeout=5, message="the stalled answer to be cut")


def test_file_answers_in_flight_are_capped(start_server, tree):
    big = _sparse(tree / "root" / "big.bin", 256 * 1024 * 1024)
    server = start_server(config={"file_roots": [tree / "root"], "max_clients": 1})
    path = target(server.file_url(big))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
        stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: server.stats()["file_answers"], message="the first answer to start")
        assert fetch(server.port, target(server.file_url(tree / "root" / "a.png")))[0] == 503
    wait_for(lambda: not server.stats()["file_answers"], message="the closed answer to end")
    assert fetch(server.port, target(server.file_url(tree / "root" / "a.png")))[2] == PNG


def test_shutdown_ends_answers_in_flight(start_server, tree):
    big = _sparse(tree / "root" / "big.bin", 256 * 1024 * 1024)
    server = start_server(config={"file_roots": [tree / "root"]})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
        stalled.sendall(f"GET {target(server.file_url(big))} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: server.stats()["file_answers"], message="the answer to start")
        started = time.monotonic()
        assert server.shutdown()
        assert time.monotonic() - started < server.config.shutdown_timeout + 0.5


SERVE_BIG = textwrap.dedent(
    """
    import json, sys
    from igor import IgorServer
    server = IgorServer(port=0, file_roots=[sys.argv[1]]).start()
    print(json.dumps({"url": server.file_url(sys.argv[2])}), flush=True)
    server.wait()
    """
)


def _memory(pid):
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the server's memory from /proc")
def test_a_large_file_is_streamed_in_bounded_memory(tree):
    size = 1024 * 1024 * 1024
    big = _sparse(tree / "root" / "big.bin", size)
    env = {**os.environ, "PYTHONPATH": ROOT}
    child = subprocess.Popen([sys.executable, "-c", SERVE_BIG, str(tree / "root"), str(big)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(child.stdout.readline())["url"]
        parts = urlsplit(url)
        before = _memory(child.pid)
        received = 0
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(f"GET {target(url)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            buffer = bytearray(1 << 20)
            while count := sock.recv_into(buffer):
                received += count
        after = _memory(child.pid)
        assert received > size  # the head, then every byte
        growth = after["VmHWM"] - max(before["VmHWM"], before["VmRSS"])
        assert growth < 32 * 1024 * 1024, f"the server's peak memory grew by {growth / 2**20:.0f} MiB"
    finally:
        child.terminate()
        child.wait(10)


# -- the static folder shares the answers -------------------------------------------------------


def test_static_files_answer_ranges_too(start_server, tree):
    server = start_server(config={"static_dir": tree / "root"})
    status, headers, body = fetch(server.port, "/a.png", headers={"Range": "bytes=-4"})
    assert (status, body, headers["content-range"]) == (206, PNG[-4:], "bytes 1020-1023/1024")
    assert headers["cache-control"] == "no-cache"
    assert fetch(server.port, "/.igor/file/0/a.png")[0] == 403  # the prefix is the file URLs', never static_dir's
