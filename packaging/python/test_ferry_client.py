"""Tests of ferry_client against a real ferryd (run by tests/python_client.rs).

Environment: FERRY_TEST_HOST, FERRY_TEST_PORT, FERRY_TEST_UDP_PORT,
FERRY_TEST_KEYS (the daemon's keys file) and FERRY_TEST_ROOT (its served
directory, to check files on disk).  Standard library only:

    python3 -m unittest -v test_ferry_client     (from packaging/python)
"""

import hashlib
import io
import os
import stat
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ferry_client  # noqa: E402
from ferry_client import Client, FerryError, UdpClient  # noqa: E402

HOST = os.environ.get("FERRY_TEST_HOST", "127.0.0.1")
PORT = int(os.environ.get("FERRY_TEST_PORT", "0"))
UDP_PORT = int(os.environ.get("FERRY_TEST_UDP_PORT", "0"))
KEYS = os.environ.get("FERRY_TEST_KEYS", "")
ROOT = os.environ.get("FERRY_TEST_ROOT", "")
# The digest transfers use by default: "sha256" runs the library as it is
# without the blake3 package (stdlib only, whatever this Python has);
# "blake3" needs the package (cargo test runs both).
DIGEST = os.environ.get("FERRY_TEST_DIGEST", "sha256")
if DIGEST == "sha256":
    ferry_client._blake3 = None
    ferry_client.DIGESTS = ("sha256",)
elif ferry_client._blake3 is None:
    raise SystemExit("FERRY_TEST_DIGEST=blake3 needs the blake3 package")


def hexof(data, digest=None):
    """The hex digest of data, as the server computes it."""
    h = ferry_client._hasher(digest or DIGEST)
    h.update(data)
    return h.hexdigest()


def client(**kw):
    return Client(HOST, PORT, keys=KEYS, connect_timeout=10, io_timeout=30, **kw)


@unittest.skipUnless(PORT and KEYS and ROOT, "needs a ferryd: run through cargo test --test python_client")
class TcpTests(unittest.TestCase):
    def setUp(self):
        self.c = client()

    def tearDown(self):
        self.c.close()

    def test_ping_and_server_name(self):
        self.assertLess(self.c.ping(), 5)
        self.assertTrue(self.c.server.startswith("ferryd"))

    def test_run_cmd_collects_output_and_status(self):
        r = self.c.run("printf 'out\\n'; printf 'err\\n' >&2; exit 3")
        self.assertEqual((r.code, r.signal, r.timed_out), (3, None, False))
        self.assertEqual((r.stdout, r.stderr), (b"out\n", b"err\n"))

    def test_run_argv_env_cwd(self):
        os.makedirs(os.path.join(ROOT, "sub"), exist_ok=True)
        r = self.c.run(["sh", "-c", 'printf "%s %s" "$FOO" "$(basename "$PWD")"'], env={"FOO": "bar"}, cwd="sub")
        self.assertEqual((r.code, r.stdout), (0, b"bar sub"))

    def test_run_streams_to_callbacks(self):
        out, err = [], []
        r = self.c.run("for i in 1 2 3; do echo $i; sleep 0.05; done; echo e >&2",
                       on_stdout=out.append, on_stderr=err.append)
        self.assertEqual(r.code, 0)
        self.assertEqual(b"".join(out), b"1\n2\n3\n")
        self.assertGreaterEqual(len(out), 2, "output arrives as it is produced")
        self.assertEqual(b"".join(err), b"e\n")
        self.assertEqual(r.stdout, b"")

    def test_run_large_output_is_whole(self):
        r = self.c.run("head -c 3000000 /dev/zero | tr '\\0' x")
        self.assertEqual(r.stdout, b"x" * 3000000)

    def test_stdin_bytes_large_and_binary(self):
        data = os.urandom(3 * 1024 * 1024 + 7)
        r = self.c.run("cat", stdin=data)  # output flows back while input goes in
        self.assertEqual(r.code, 0)
        self.assertEqual(r.stdout, data)

    def test_stdin_file_object_and_pipe(self):
        r = self.c.run(["sha256sum"], stdin=io.BytesIO(b"hello\n"))
        self.assertEqual(r.stdout.split()[0].decode(), hashlib.sha256(b"hello\n").hexdigest())
        rd, wr = os.pipe()
        os.write(wr, b"a\nb\n")
        os.close(wr)
        with os.fdopen(rd, "rb") as f:
            r = self.c.run("wc -l", stdin=f)
        self.assertEqual(r.stdout.strip(), b"2")

    def test_no_stdin_reads_dev_null(self):
        r = self.c.run("cat; echo end")
        self.assertEqual(r.stdout, b"end\n")

    def test_signal_from_a_callback(self):
        sent = []

        def on_out(chunk):
            if not sent:
                sent.append(1)
                self.c.signal("INT")
        # The trap is set before the output that triggers the signal, so the
        # shell cannot miss it (it may arrive between two sleeps).
        t = time.monotonic()
        r = self.c.run("trap 'exit 9' INT; echo started; while :; do sleep 0.1; done", on_stdout=on_out)
        self.assertLess(time.monotonic() - t, 10)
        self.assertEqual((r.code, r.signal), (9, None))

    def test_resize_without_a_terminal_is_refused_here_and_runs_never_mix(self):
        refused, got = [], []

        def on_out(chunk):
            got.append(chunk)
            if not refused:
                try:
                    self.c.resize(40, 100)
                except ValueError as e:
                    refused.append(str(e))
        r = self.c.run("echo first; sleep 0.2; echo first-end", on_stdout=on_out)
        self.assertIn("no command runs on a terminal", refused[0])
        self.assertEqual((r.code, b"".join(got)), (0, b"first\nfirst-end\n"))
        with self.assertRaises(ValueError):
            self.c.resize(40, 100)  # nothing runs
        # An error the server answers in the middle of a run (here a resize
        # sent behind the library's back) ends that run, with its command,
        # and the next run gets its own replies.
        sent = []

        def on_started(chunk):
            if not sent:
                sent.append(1)
                self.c._send({"type": "resize", "rows": 1, "cols": 1})
        t = time.monotonic()
        with self.assertRaises(FerryError) as cm:
            self.c.run("echo started; sleep 30; echo never", on_stdout=on_started)
        self.assertEqual(cm.exception.code, "bad-request")
        self.assertLess(time.monotonic() - t, 15, "the command was ended, not waited for")
        r = self.c.run("echo second")
        self.assertEqual((r.code, r.stdout), (0, b"second\n"))
        self.assertLess(self.c.ping(), 5)
        # A refused exec is resynchronised too, and costs nothing else.
        with self.assertRaises(FerryError) as cm:
            self.c.run(["/nonexistent/program"])
        self.assertEqual(cm.exception.code, "spawn-failed")
        self.assertEqual(self.c.run("echo third").stdout, b"third\n")

    def test_pty_prompt_answered_from_a_callback(self):
        # A prompt that reads the terminal with echo off, as sudo and su do.
        script = ("tty; stty size; echo \"T=$TERM\"; stty -echo; printf 'Password: '; read pw; "
                  "stty echo; echo; echo \"got=$pw\"; echo err >&2; exit 4")
        seen, answered = [], []

        def on_out(chunk):
            seen.append(chunk)
            # Answered once: a second answer would arrive after `stty echo`
            # and be echoed, which is what the test rules out.
            if not answered and b"Password: " in b"".join(seen):
                answered.append(1)
                self.c.send_input(b"s3cret\n")
        r = self.c.run(script, pty={"term": "xterm", "rows": 30, "cols": 90}, on_stdout=on_out)
        out = b"".join(seen)
        self.assertEqual(r.code, 4, out)
        self.assertIn(b"/dev/pts/", out)
        self.assertIn(b"30 90\r\n", out)
        self.assertIn(b"T=xterm", out)
        self.assertIn(b"got=s3cret", out)
        self.assertNotIn(b"s3cret\r\n", out.split(b"got=")[0])  # not echoed
        self.assertIn(b"err", out)  # one terminal: stderr on it too
        self.assertEqual(r.stderr, b"")
        # The login shell: typed to once it has prompted; a resize is seen.
        typed, out_login = [], []

        def on_prompt(chunk):
            if not typed:
                typed.append(1)
                self.c.resize(33, 77)
                self.c.send_input(b"stty size; echo \"zero=$0\"; exit 3\n")
        r = self.c.run(None, pty=True, on_stdout=lambda c: (on_prompt(c), out_login.append(c)))
        text = b"".join(out_login)
        self.assertEqual(r.code, 3, text)
        self.assertIn(b"33 77", text)
        self.assertIn(b"zero=-", text)
        with self.assertRaises(ValueError):
            self.c.run("true", pty="yes")

    def test_signal_kills_with_its_number(self):
        # A command that exits on the signal's default action: argv, no shell.
        # Signals before the command starts are dropped, so repeat until it ends.
        done = threading.Event()

        def keep_signalling():
            while not done.wait(0.2):
                self.c.signal("SIGTERM")
        threading.Thread(target=keep_signalling, daemon=True).start()
        try:
            r = self.c.run(["sleep", "30"])
        finally:
            done.set()
        self.assertEqual((r.code, r.signal, r.status), (None, 15, 143))
        with self.assertRaises(ValueError):
            self.c.signal("USR1")

    def test_a_failing_callback_closes_the_connection(self):
        def boom(chunk):
            raise RuntimeError("boom")
        with self.assertRaises(RuntimeError):
            self.c.run("echo a; sleep 0.2; echo b", on_stdout=boom)
        with self.assertRaises(FerryError) as e:
            self.c.ping()
        self.assertEqual(e.exception.code, "protocol")

    def test_timeout(self):
        r = self.c.run("sleep 30", timeout=0.3)
        self.assertTrue(r.timed_out)
        self.assertEqual(r.signal, 15)

    def test_spawn_failed_keeps_the_connection(self):
        with self.assertRaises(FerryError) as e:
            self.c.run(["/nonexistent/program"])
        self.assertEqual(e.exception.code, "spawn-failed")
        self.assertEqual(e.exception.status, 127, "as ferry(1) exits")
        self.assertFalse(e.exception.fatal)
        self.assertEqual(self.c.run("exit 7").code, 7)

    def test_put_bytes_then_get_with_digest(self):
        data = os.urandom(700000)
        ok = self.c.put(data, "dir/a.bin", mode=0o600)
        self.assertEqual((ok["digest"], ok[DIGEST]), (DIGEST, hexof(data)))
        self.assertEqual(ok["file_size"], len(data))
        on_disk = os.path.join(ROOT, "dir", "a.bin")
        with open(on_disk, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(stat.S_IMODE(os.stat(on_disk).st_mode), 0o600)
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "a.bin")
            h = self.c.get("dir/a.bin", local)
            self.assertEqual((h["digest"], h[DIGEST]), (DIGEST, hexof(data)))
            self.assertEqual(h["file_size"], len(data))
            with open(local, "rb") as f:
                self.assertEqual(f.read(), data)
            self.assertFalse(os.path.exists(local + ".part"))
            # resume: keep the first 1000 bytes, fetch the rest, whole digest checked
            with open(local, "r+b") as f:
                f.truncate(1000)
            self.c.get("dir/a.bin", local, offset=1000)
            with open(local, "rb") as f:
                self.assertEqual(f.read(), data)

    def test_get_never_follows_a_link_at_the_part_or_the_file(self):
        self.c.put(b"remote bytes", "s.txt", mode=0o644)
        with tempfile.TemporaryDirectory() as d:
            precious = os.path.join(d, "precious")
            with open(precious, "wb") as f:
                f.write(b"mine")
            os.chmod(precious, 0o600)
            local = os.path.join(d, "report.txt")
            os.symlink(precious, local + ".part")
            with self.assertRaises(FerryError) as e:
                self.c.get("s.txt", local)
            self.assertIn("symbolic link", e.exception.message)
            os.unlink(local + ".part")
            os.symlink(precious, local)
            with self.assertRaises(FerryError):
                self.c.get("s.txt", local, offset=2)
            self.c.get("s.txt", local)
            self.assertFalse(os.path.islink(local))
            with open(precious, "rb") as f:
                self.assertEqual(f.read(), b"mine")
            self.assertEqual(stat.S_IMODE(os.stat(precious).st_mode), 0o600)
            # A directory destination takes the file inside it, as cp does.
            os.mkdir(os.path.join(d, "in"))
            self.c.get("s.txt", os.path.join(d, "in"))
            with open(os.path.join(d, "in", "s.txt"), "rb") as f:
                self.assertEqual(f.read(), b"remote bytes")
        self.assertEqual(self.c.run("echo still").stdout, b"still\n")

    def test_get_into_a_file_object_and_no_digest(self):
        self.c.put(b"abc" * 1000, "g.txt")
        buf = io.BytesIO()
        h = self.c.get("g.txt", buf)
        self.assertEqual(buf.getvalue(), b"abc" * 1000)
        self.assertIn(DIGEST, h)
        buf = io.BytesIO()
        h = self.c.get("g.txt", buf, digest="none")
        self.assertEqual(buf.getvalue(), b"abc" * 1000)
        self.assertNotIn(DIGEST, h)
        self.assertEqual(h["digest"], "none")
        buf = io.BytesIO(b"abc")
        buf.seek(3)
        self.c.get("g.txt", buf, offset=3)
        self.assertEqual(buf.getvalue(), b"abc" * 1000)

    def test_get_digest_mismatch_is_detected(self):
        # A resumed get whose local prefix differs from the server's file.
        self.c.put(b"0123456789" * 100, "m.txt")
        buf = io.BytesIO(b"XXXXX")
        buf.seek(5)
        with self.assertRaises(FerryError) as e:
            self.c.get("m.txt", buf, offset=5)
        self.assertEqual(e.exception.code, "digest-mismatch")
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "m.txt")
            with open(local, "wb") as f:
                f.write(b"YYYYY")
            with self.assertRaises(FerryError):
                self.c.get("m.txt", local, offset=5)
        self.assertEqual(self.c.run("echo still").stdout, b"still\n")

    def test_put_path_file_object_and_stream(self):
        data = os.urandom(300000)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "src.bin")
            with open(p, "wb") as f:
                f.write(data)
            ok = self.c.put(p, "p1.bin")  # a path: sized, hashed as sent, digest in a trailer
            self.assertEqual(ok[DIGEST], hexof(data))
            with open(p, "rb") as f:
                f.seek(100)  # a regular file object: from its position
                ok = self.c.put(f, "p2.bin")
            self.assertEqual(ok["file_size"], len(data) - 100)
        rd, wr = os.pipe()  # unknown length: a streaming put
        threading.Thread(target=lambda: (os.write(wr, data), os.close(wr))).start()
        with os.fdopen(rd, "rb") as f:
            ok = self.c.put(f, "p3.bin", mode=0o640)
        self.assertEqual(ok[DIGEST], hexof(data))
        for name, want in (("p1.bin", data), ("p2.bin", data[100:]), ("p3.bin", data)):
            with open(os.path.join(ROOT, name), "rb") as f:
                self.assertEqual(f.read(), want, name)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(ROOT, "p3.bin")).st_mode), 0o640)

    def test_digests_the_server_announces_and_each_digest_by_name(self):
        self.assertEqual(self.c.digests, ["blake3", "sha256"])
        self.assertEqual(self.c.best_digest(), DIGEST)
        data = os.urandom(600000)
        names = ("sha256", "none") + (("blake3",) if DIGEST == "blake3" else ())
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "src.bin")
            with open(p, "wb") as f:
                f.write(data)
            for name in names:
                for source in (data, p):
                    ok = self.c.put(source, "dg.bin", digest=name)
                    self.assertEqual(ok["digest"], name)
                    if name != "none":
                        self.assertEqual(ok[name], hexof(data, name))
                    with open(os.path.join(ROOT, "dg.bin"), "rb") as f:
                        self.assertEqual(f.read(), data)
                rd, wr = os.pipe()
                threading.Thread(target=lambda: (os.write(wr, data), os.close(wr))).start()
                with os.fdopen(rd, "rb") as f:
                    self.assertEqual(self.c.put(f, "dg-s.bin", digest=name)["digest"], name)
                buf = io.BytesIO()
                h = self.c.get("dg.bin", buf, digest=name)
                self.assertEqual((buf.getvalue(), h["digest"]), (data, name))
                if name != "none":
                    self.assertEqual(h[name], hexof(data, name))
        if DIGEST == "sha256":
            with self.assertRaises(ValueError):  # without the blake3 package
                self.c.get("dg.bin", io.BytesIO(), digest="blake3")
        for bad in ("md5", "", "BLAKE3"):  # "" is not the default (None is)
            with self.assertRaises(ValueError):
                self.c.put(b"x", "dg.bin", digest=bad)
            with self.assertRaises(ValueError):
                self.c.get("dg.bin", io.BytesIO(), digest=bad)
        self.assertEqual(self.c.run("echo still").stdout, b"still\n")

    def test_stat_and_list(self):
        self.c.put(b"12345", "ls/one.txt", mode=0o644)
        self.c.put(b"", "ls/two.txt")
        st = self.c.stat("ls/one.txt")
        self.assertEqual((st["kind"], st["file_size"], st["mode"]), ("file", 5, 0o644))
        self.assertEqual(self.c.stat("ls")["kind"], "dir")
        names = [(e["name"], e["kind"], e["file_size"]) for e in self.c.list("ls")]
        self.assertEqual(names, [("one.txt", "file", 5), ("two.txt", "file", 0)])
        self.assertIn("ls", [e["name"] for e in self.c.list()])

    def test_put_tree_and_get_tree_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            os.makedirs(os.path.join(src, "a", "b"))
            os.makedirs(os.path.join(src, "empty"))
            with open(os.path.join(src, "a", "b", "f.bin"), "wb") as f:
                f.write(os.urandom(300000))
            open(os.path.join(src, "zero"), "wb").close()
            os.chmod(os.path.join(src, "zero"), 0o4640)
            os.utime(os.path.join(src, "zero"), (1500000000, 1500000000))
            os.symlink("../zero", os.path.join(src, "a", "in"))
            os.symlink("/etc/passwd", os.path.join(src, "out"))
            r = self.c.put_tree(src, "pytree")
            self.assertEqual([(p, e.code) for p, e in r["failed"]], [("out", "bad-path")])
            # The library's digest choice: blake3 with the package, else sha256;
            # f.bin (over TREE_BATCH) went with a trailer, zero in its header.
            self.assertEqual(r["digest"], self.c.best_digest())
            st = os.stat(os.path.join(ROOT, "pytree", "zero"))
            self.assertEqual((stat.S_IMODE(st.st_mode), int(st.st_mtime)), (0o640, 1500000000))
            self.assertTrue(os.path.isdir(os.path.join(ROOT, "pytree", "empty")))
            self.assertEqual(os.readlink(os.path.join(ROOT, "pytree", "a", "in")), "../zero")
            names = [e["name"] for e in self.c.list_tree("pytree")]
            self.assertEqual(names, ["a", "a/b", "a/b/f.bin", "a/in", "empty", "zero"])
            back = os.path.join(d, "back")
            r = self.c.get_tree("pytree", back)
            self.assertEqual((r["failed"], r["digest"]), ([], self.c.best_digest()))
            with open(os.path.join(src, "a", "b", "f.bin"), "rb") as a, open(os.path.join(back, "a", "b", "f.bin"), "rb") as b:
                self.assertEqual(a.read(), b.read())
            self.assertEqual(os.readlink(os.path.join(back, "a", "in")), "../zero")
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(back, "zero")).st_mode), 0o640)
            self.assertTrue(os.path.isdir(os.path.join(back, "empty")))
            # sha256 on request, both ways, the big file included.
            r = self.c.put_tree(os.path.join(src, "a"), "pytree-sha", digest="sha256")
            self.assertEqual((r["failed"], r["digest"]), ([], "sha256"))
            r = self.c.get_tree("pytree-sha", os.path.join(d, "back-sha"), digest="sha256")
            # a/in (to ../zero) leads outside this smaller tree.
            self.assertEqual(([(p, e.code) for p, e in r["failed"]], r["digest"]), ([("in", "bad-path")], "sha256"))
            with open(os.path.join(src, "a", "b", "f.bin"), "rb") as a, open(os.path.join(d, "back-sha", "b", "f.bin"), "rb") as b:
                self.assertEqual(a.read(), b.read())
            self.assertEqual(self.c.ping() >= 0, True)  # the session goes on

    def test_put_tree_to_a_server_without_trailers_streams_each_file(self):
        # As to an older server (no digests announced): the digest goes in
        # each header, and a big file is read in chunks (hashed, then sent),
        # never whole, as put sends one (a file up to TREE_BATCH, batched,
        # is read whole).
        reads = []

        class Recording(io.BufferedReader):
            def read(self, n=-1):
                if self.name.endswith("big.bin"):
                    reads.append(n)
                return super().read(n)

        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            os.makedirs(src)
            big = os.urandom(3 * ferry_client.CHUNK + 12345)
            with open(os.path.join(src, "big.bin"), "wb") as f:
                f.write(big)
            with open(os.path.join(src, "small"), "wb") as f:
                f.write(b"small")
            self.c.digests = None
            ferry_client.open = lambda path, mode="rb": Recording(io.FileIO(path, "r"))
            try:
                r = self.c.put_tree(src, "pytree-old", digest="sha256")
            finally:
                del ferry_client.open
            self.assertEqual((r["failed"], r["digest"]), ([], "sha256"))
            self.assertTrue(reads and all(0 < n <= ferry_client.CHUNK for n in reads), reads)
            with open(os.path.join(ROOT, "pytree-old", "big.bin"), "rb") as f:
                self.assertEqual(f.read(), big)
            with open(os.path.join(ROOT, "pytree-old", "small"), "rb") as f:
                self.assertEqual(f.read(), b"small")
            r = self.c.put_tree(src, "pytree-old-none", digest="none")
            self.assertEqual(r["failed"], [])
            with open(os.path.join(ROOT, "pytree-old-none", "big.bin"), "rb") as f:
                self.assertEqual(f.read(), big)
            self.assertGreaterEqual(self.c.ping(), 0)  # the session goes on

    def test_trees_land_as_the_cli_and_report_what_cannot_be_sent(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "small")
            os.makedirs(src)
            with open(os.path.join(src, "f"), "wb") as f:
                f.write(b"f")
            bad = os.path.join(os.fsencode(src), b"bad\xff")
            with open(bad, "wb") as f:
                f.write(b"x")
            os.mkfifo(os.path.join(src, "fifo"))
            os.makedirs(os.path.join(ROOT, "pyinto"))
            r = self.c.put_tree(src, "pyinto")
            self.assertEqual(sorted((p, e.code) for p, e in r["failed"]),
                             [("bad\udcff", "bad-path"), ("fifo", "skipped")])
            self.assertIn("bad\\377", str(r["failed"][0][1]) + str(r["failed"][1][1]))
            self.assertEqual(sorted(os.listdir(os.path.join(ROOT, "pyinto", "small"))), ["f"])
            r = self.c.put_tree(src, "pyslash/")
            self.assertEqual(os.listdir(os.path.join(ROOT, "pyslash")), ["small"])
            self.assertEqual(self.c.ping() >= 0, True)  # the connection was kept
            self.c.put_tree(os.path.join(src, "f"), "pyinto")
            with open(os.path.join(ROOT, "pyinto", "f"), "rb") as f:
                self.assertEqual(f.read(), b"f")
            back = os.path.join(d, "back")
            os.makedirs(back)
            r = self.c.get_tree("pyinto/small", back)
            self.assertEqual((r["failed"], os.listdir(back)), ([], ["small"]))
            r = self.c.get_tree("pyinto/small", os.path.join(d, "x", "y", "z"))
            self.assertEqual(os.listdir(os.path.join(d, "x", "y", "z")), ["f"])
            self.c.get_tree("pyinto/f", back)
            with open(os.path.join(back, "f"), "rb") as f:
                self.assertEqual(f.read(), b"f")
            os.makedirs(os.fsencode(os.path.join(ROOT, "pynon")) + b"/d\xfe/x")
            r = self.c.get_tree("pynon", os.path.join(d, "pynon"))
            self.assertEqual([e.code for _, e in r["failed"]], ["bad-path"])
            for call in (lambda: self.c.get_tree("nope", back), lambda: self.c.put_tree(os.path.join(d, "nope"), "x"),
                         lambda: self.c.get_tree("pyinto/small", os.path.join(back, "f", "sub"))):
                with self.assertRaises(FerryError) as e:
                    call()
                self.assertIn(e.exception.code, ("not-found", "not-a-directory"))

    def test_get_tree_reports_a_directory_the_server_could_not_read(self):
        # As the listing of a server that cannot open tree/closed gives it.
        err = {"code": "permission-denied", "message": '"t/closed": permission denied'}
        listing = [{"name": "closed", "kind": "dir", "file_size": 0, "mode": 0o755, "mtime": 0, "error": err}]
        c = self.c
        c.stat, c.list_tree = (lambda p: {"kind": "dir", "mode": 0o755, "mtime": 0}), (lambda p: listing)
        try:
            with tempfile.TemporaryDirectory() as d:
                r = c.get_tree("t", os.path.join(d, "t"))
                self.assertEqual([(p, e.code) for p, e in r["failed"]], [("closed", "permission-denied")])
        finally:
            del c.stat, c.list_tree

    def test_errors_not_found_and_bad_path(self):
        cases = [
            (lambda: self.c.stat("no/such/file"), "not-found"),
            (lambda: self.c.get("nope.txt", io.BytesIO()), "not-found"),
            (lambda: self.c.list("nope"), "not-found"),
            (lambda: self.c.stat("../etc/passwd"), "bad-path"),
            (lambda: self.c.get("/etc/passwd", io.BytesIO()), "bad-path"),
            (lambda: self.c.put(b"x", "../escape.txt"), "bad-path"),
            (lambda: self.c.run("true", cwd="../"), "bad-path"),
            (lambda: self.c.get(".", io.BytesIO()), "is-a-directory"),
        ]
        for f, code in cases:
            with self.assertRaises(FerryError) as e:
                f()
            self.assertEqual(e.exception.code, code, e.exception)
            self.assertTrue(e.exception.message)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(ROOT), "escape.txt")))
        self.assertLess(self.c.ping(), 5)  # none of them was fatal

    def test_failed_get_leaves_no_part_file(self):
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "x")
            with self.assertRaises(FerryError):
                self.c.get("missing", local)
            self.assertEqual(os.listdir(d), [])


@unittest.skipUnless(PORT and KEYS, "needs a ferryd")
class AuthTests(unittest.TestCase):
    def test_key_from_file_by_id_and_by_secret(self):
        key_id, secret = ferry_client.load_key(KEYS)
        with Client(HOST, PORT, key_id=key_id, secret=secret) as c:
            self.assertEqual(c.run("echo hi").stdout, b"hi\n")
        with Client(HOST, PORT, keys=KEYS, key_id=key_id) as c:
            c.ping()

    def test_wrong_secret_is_auth_failed(self):
        key_id, _ = ferry_client.load_key(KEYS)
        with self.assertRaises(FerryError) as e:
            Client(HOST, PORT, key_id=key_id, secret="0" * 64)
        self.assertEqual(e.exception.code, "auth-failed")
        self.assertTrue(e.exception.fatal)

    def test_unknown_key_id_is_auth_failed(self):
        with self.assertRaises(FerryError) as e:
            Client(HOST, PORT, key_id="nobody", secret="x" * 32)
        self.assertEqual(e.exception.code, "auth-failed")

    def test_keys_file_checks(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "keys")
            with open(p, "w") as f:
                f.write("# comment\n\nk1 " + "a" * 32 + "\nk2 " + "b" * 32 + "\n")
            os.chmod(p, 0o600)
            self.assertEqual(ferry_client.load_key(p), ("k1", "a" * 32))
            self.assertEqual(ferry_client.load_key(p, "k2"), ("k2", "b" * 32))
            with self.assertRaises(FerryError):
                ferry_client.load_key(p, "k3")
            os.chmod(p, 0o640)
            with self.assertRaises(FerryError) as e:
                ferry_client.load_key(p)
            self.assertIn("chmod 600", e.exception.message)
            with self.assertRaises(FerryError):
                ferry_client.load_key(os.path.join(d, "missing"))


@unittest.skipUnless(UDP_PORT and KEYS, "needs a ferryd with --udp")
class UdpTests(unittest.TestCase):
    def test_udp_ping(self):
        pong = ferry_client.udp_ping(HOST, UDP_PORT, keys=KEYS)
        self.assertLess(pong["rtt"], 5)
        self.assertLess(abs(pong["ts"] - time.time()), 5)

    def test_udp_run(self):
        r = ferry_client.udp_run(HOST, UDP_PORT, "echo hi; echo oops >&2; exit 4", keys=KEYS)
        self.assertEqual((r.code, r.signal, r.stdout, r.stderr, r.truncated), (4, None, b"hi\n", b"oops\n", False))
        r = UdpClient(HOST, UDP_PORT, keys=KEYS).run(["sh", "-c", 'echo "$X"'], env={"X": "y"})
        self.assertEqual(r.stdout, b"y\n")

    def test_udp_run_truncated(self):
        r = ferry_client.udp_run(HOST, UDP_PORT, "head -c 100000 /dev/zero", keys=KEYS)
        self.assertTrue(r.truncated)
        self.assertEqual(r.stdout_total, 100000)
        self.assertLess(len(r.stdout), 1400)
        self.assertEqual(r.stdout, b"\0" * len(r.stdout))

    def test_udp_error_reply(self):
        with self.assertRaises(FerryError) as e:
            ferry_client.udp_run(HOST, UDP_PORT, ["/nonexistent/x"], keys=KEYS)
        self.assertEqual(e.exception.code, "spawn-failed")
        with self.assertRaises(FerryError) as e:
            ferry_client.udp_stat(HOST, UDP_PORT, "../x", keys=KEYS)
        self.assertEqual(e.exception.code, "bad-path")

    def test_udp_wrong_key_gets_silence(self):
        key_id, _ = ferry_client.load_key(KEYS)
        t = time.monotonic()
        with self.assertRaises(FerryError) as e:
            UdpClient(HOST, UDP_PORT, key_id=key_id, secret="z" * 64, timeout=0.8).ping()
        self.assertEqual(e.exception.code, "timeout")
        self.assertLess(time.monotonic() - t, 3)


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(PORT and UDP_PORT and KEYS, "needs a ferryd: run through cargo test --test python_client")
class DocTests(unittest.TestCase):
    def test_statuses_match_the_cli(self):
        self.assertEqual(FerryError("spawn-failed").status, 127)
        self.assertEqual(FerryError("not-found").status, 1)
        self.assertEqual(FerryError("not-allowed").status, 255)
        self.assertEqual(FerryError("auth-failed").status, 255)

    def test_the_module_example_runs_as_written(self):
        # The example from the module's docstring, with only the address,
        # the keys file and the local path replaced.
        doc = ferry_client.__doc__
        start = doc.index("    from ferry_client import")
        end = doc.index("\n\n", doc.index("udp_ping(", start))
        code = "\n".join(line[4:] for line in doc[start:end].splitlines())
        with tempfile.TemporaryDirectory() as tmp:
            code = (code.replace('"127.0.0.1", 7075', f"{HOST!r}, {PORT}", 1)
                    .replace('"127.0.0.1", 7075', f"{HOST!r}, {UDP_PORT}", 1)
                    .replace('"~/.config/ferry/keys"', repr(KEYS))
                    .replace('"/tmp/greeting.txt"', repr(os.path.join(tmp, "greeting.txt"))))
            out = io.StringIO()
            real = sys.stdout
            sys.stdout = out
            try:
                exec(compile(code, "ferry_client.__doc__", "exec"), {})
            finally:
                sys.stdout = real
            with open(os.path.join(tmp, "greeting.txt"), "rb") as f:
                self.assertEqual(f.read(), b"hello\n")
        self.assertIn("0 b'", out.getvalue())
