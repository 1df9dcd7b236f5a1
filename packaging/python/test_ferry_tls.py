"""Tests of ferry_client's secure transports (run by tests/python_tls.rs, in
a venv that has the cryptography package).

Without a server: the derivation, certificates, SNI names and sealed
datagrams against the test vectors of ferry-protocol(7) (TLS, Sealed
datagrams), the choice of transport, and sealed datagrams against a
stand-in UDP server made of this library's own sealer.

With a TLS server (FERRY_TEST_TLS_PORT, FERRY_TEST_KEYS, FERRY_TEST_ROOT;
FERRY_TEST_TLS_QUIET_PORT for one that sends no v1 hello first;
FERRY_TEST_PLAIN_PORT for a plaintext v1 port; FERRY_TEST_SEALED_UDP_PORT
for a ferryd that takes sealed datagrams): exec, stdin, signals, get and
put over TLS, and a wrong or unknown key.

    python3 -m unittest -v test_ferry_tls     (from packaging/python)
"""

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ferry_client  # noqa: E402
from ferry_client import Client, FerryError, UdpClient  # noqa: E402

HOST = os.environ.get("FERRY_TEST_HOST", "127.0.0.1")
TLS_PORT = int(os.environ.get("FERRY_TEST_TLS_PORT", "0"))
QUIET_PORT = int(os.environ.get("FERRY_TEST_TLS_QUIET_PORT", "0"))
PLAIN_PORT = int(os.environ.get("FERRY_TEST_PLAIN_PORT", "0"))
SEALED_UDP_PORT = int(os.environ.get("FERRY_TEST_SEALED_UDP_PORT", "0"))
KEYS = os.environ.get("FERRY_TEST_KEYS", "")
ROOT = os.environ.get("FERRY_TEST_ROOT", "")

EXAMPLE = ("example", "example-secret-do-not-use")


class VectorTests(unittest.TestCase):
    """ferry-protocol(7), TLS: the key "example" of its worked example."""

    def test_derivation(self):
        d = lambda label: ferry_client.derive_key(*EXAMPLE, label).hex()  # noqa: E731
        self.assertEqual(d("ferry-tls-server"), "af7c28d20c79057950dc6f15525adc68f72d011b3d6ea26ba0f5dc996501f10a")
        self.assertEqual(d("ferry-tls-client"), "4f2e3dafb4df87a46b83c15934d58c716fa0c304f52e5f4bb7f6fea8b3732f56")
        self.assertEqual(d("ferry-udp-request-key"), "33f85442b6c8cf34bcb54803c4fb825c2c255db83a8d3d4bfddf08c369f6b214")
        self.assertEqual(d("ferry-udp-reply-key"), "7a510e463395d6165dbd64ad1e4dc8d983656f4db50c2086a73b6a861408925d")

    def test_identities_and_certificates(self):
        seed, public, cert = ferry_client.tls_identity(*EXAMPLE, "server")
        self.assertEqual(seed.hex(), "af7c28d20c79057950dc6f15525adc68f72d011b3d6ea26ba0f5dc996501f10a")
        self.assertEqual(public.hex(), "e1ad9db73c17a1e3855d057c57e8ec66f23b3938b18ec1641c343cebbf4ffad8")
        self.assertEqual(len(cert), 223)
        self.assertEqual(hashlib.sha256(cert).hexdigest(),
                         "400366b9e8670b9b94bc2dc1a9cbadafca10f999cc6222afecc696d488d83900")
        seed, public, cert = ferry_client.tls_identity(*EXAMPLE, "client")
        self.assertEqual(seed.hex(), "4f2e3dafb4df87a46b83c15934d58c716fa0c304f52e5f4bb7f6fea8b3732f56")
        self.assertEqual(public.hex(), "c5c19862541a3569707f1aa5e99cc0ef8b4f5fd69515f22de408bbf3b3143e5f")
        self.assertEqual(hashlib.sha256(cert).hexdigest(),
                         "dc68971eef87b59ce1b24f346576a32bde56fd252934348e8aecdfa5c6c727de")
        # cryptography reads it back as an Ed25519 certificate for that key.
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        parsed = x509.load_der_x509_certificate(cert)
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        self.assertEqual(parsed.public_key().public_bytes(*raw), public)
        self.assertEqual(parsed.subject.rfc4514_string(), "CN=ferry-client")
        parsed.public_key().verify(parsed.signature, parsed.tbs_certificate_bytes)

    def test_sni_names(self):
        n = ferry_client.sni_name
        self.assertEqual(n("example"), "mv4gc3lqnrsq.k.ferry")
        self.assertEqual(n("a"), "me.k.ferry")
        self.assertEqual(n("A_b.c"), "ifpweltd.k.ferry")
        self.assertEqual(n("\u00e9"), "youq.k.ferry")
        self.assertEqual(n("x" * 152), "ndkksw6eozsogfqhzoatvsfeehzbx72hky4lovambdtmqp6vjnza.h.ferry")
        self.assertEqual(n("x" * 153), "l44k2jsy7wcdoqehcvyz6i4c5ekhs4oysaluctj24ur64cf2bafq.h.ferry")
        longest = n("x" * 151)
        self.assertEqual([len(p) for p in longest.split(".")], [63, 63, 63, 53, 1, 5])
        for key_id in ("a", "key-with-dashes", "#x", "y" * 63, "z" * 1000, "x\x7f\U0001F600"):
            name = n(key_id)
            self.assertLessEqual(len(name), 253)
            self.assertTrue(all(0 < len(p) <= 63 for p in name.split(".")), name)
            name.encode("idna")  # what ssl does with server_hostname

    def test_sealed_datagram_vectors(self):
        s = ferry_client._Sealer(*EXAMPLE)
        nonce, reply_nonce = bytes(range(12)), bytes(range(12, 24))
        ping = b"\x00\x00\x00\x1f" + b'{"type":"ping","ts":1700000000}'
        pong = b"\x00\x00\x00\x1f" + b'{"type":"pong","ts":1700000001}'
        request = bytes.fromhex(
            "46535131000102030405060708090a0b0f5158721d514e2dc6d58830262a468a"
            "076578616d706c658e30607be88d2f1e2d0252c065590a0c13c5a9b1ceb97c89"
            "8990a09f5bf0a9269a19ba")
        reply = bytes.fromhex(
            "465352310c0d0e0f101112131415161755a10c0c012cac723a79a2017db3e3b6"
            "076578616d706c65168f3505f3456d2fd7612818be8378d626e17f7ba41743e9"
            "953ac6bb23b3302ca9bf0b")
        self.assertEqual(s.seal_request(nonce, ping), request)
        self.assertEqual(s.seal_reply(nonce, reply_nonce, pong), reply)
        self.assertEqual(s.open_request(request), (nonce, ping))
        self.assertEqual(s.open_reply(reply, nonce), ({"type": "pong", "ts": 1700000001}, b""))
        # Every flipped bit, another request's nonce, another key: ignored.
        for i in range(len(reply)):
            bad = bytearray(reply)
            bad[i] ^= 0x01
            self.assertIsNone(s.open_reply(bytes(bad), nonce), f"byte {i}")
        self.assertIsNone(s.open_reply(reply, reply_nonce))
        self.assertIsNone(ferry_client._Sealer("example", "another-secret-entirely").open_reply(reply, nonce))
        self.assertIsNone(s.open_reply(request, nonce), "a request is no reply")
        self.assertEqual(request[32], 7, "byte 32 is KIDLEN: never 0, unlike a v1 datagram")
        with self.assertRaises(FerryError):
            ferry_client._Sealer("k" * 256, "s" * 32)


class TransportChoiceTests(unittest.TestCase):
    def test_auto_is_plaintext_only_to_loopback(self):
        pick = ferry_client._pick_transport
        for addr in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.2"):
            self.assertEqual(pick("auto", addr), "plaintext", addr)
        for addr in ("10.0.0.1", "192.0.2.7", "::ffff:10.0.0.1", "fe80::1%eth0", "2001:db8::1", "0.0.0.0"):
            self.assertEqual(pick("auto", addr), "tls", addr)
        self.assertEqual(pick("tls", "127.0.0.1"), "tls")
        self.assertEqual(pick("plaintext", "192.0.2.7"), "plaintext")

    def test_argument_then_environment(self):
        mode = ferry_client._transport_mode
        with mock.patch.dict(os.environ, {"FERRY_TRANSPORT": "TLS"}):
            self.assertEqual(mode(None), "tls")
            self.assertEqual(mode("plaintext"), "plaintext")
        for empty in ("", "  "):
            with mock.patch.dict(os.environ, {"FERRY_TRANSPORT": empty}):
                self.assertEqual(mode(None), "auto")
        with mock.patch.dict(os.environ, {"FERRY_TRANSPORT": " Plain "}):
            self.assertEqual(mode(None), "plaintext")
        with mock.patch.dict(os.environ):
            os.environ.pop("FERRY_TRANSPORT", None)
            self.assertEqual(mode(None), "auto")
        with mock.patch.dict(os.environ, {"FERRY_TRANSPORT": "ssh"}):
            with self.assertRaises(ValueError) as e:
                mode(None)
            self.assertIn("FERRY_TRANSPORT", str(e.exception))
        with self.assertRaises(ValueError):
            mode("quic")

    def test_importing_the_library_needs_no_cryptography(self):
        code = "import sys, ferry_client; assert 'cryptography' not in sys.modules, 'imported'"
        subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True)


class _SealedUdpServer(threading.Thread):
    """A stand-in for ferryd's sealed datagram mode: answers ping (after
    dropping the first copy, so the client resends) with a stray datagram
    first, then the sealed pong."""

    def __init__(self, key_id, secret):
        super().__init__(daemon=True)
        self.sealer = ferry_client._Sealer(key_id, secret)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.seen = []

    def run(self):
        try:
            while True:
                data, peer = self.sock.recvfrom(65535)
                self.seen.append(data)
                if len(self.seen) == 1:
                    continue  # lost
                opened = self.sealer.open_request(data)
                if opened is None:
                    continue
                nonce, plaintext = opened
                header = ferry_client._read_frame(ferry_client._Buffer(plaintext).read)[0]
                assert "key_id" not in header and "nonce" not in header, header
                reply = ferry_client._encode_head({"type": "pong", "ts": header["ts"]})
                self.sock.sendto(b"FSR1" + os.urandom(60), peer)
                self.sock.sendto(self.sealer.seal_reply(nonce, os.urandom(12), reply), peer)
                return
        except OSError:
            pass
        finally:
            self.sock.close()


class SealedUdpClientTests(unittest.TestCase):
    def test_sealed_ping_round_trip_with_a_resend(self):
        server = _SealedUdpServer("k1", "s" * 32)
        server.start()
        c = UdpClient("127.0.0.1", server.port, key_id="k1", secret="s" * 32, transport="tls",
                      timeout=5, retransmit=0.1)
        pong = c.ping()
        server.join(5)
        self.assertTrue(c.sealed)
        self.assertLess(abs(pong["ts"] - time.time()), 5)
        self.assertEqual(len(server.seen), 2)
        self.assertEqual(server.seen[0], server.seen[1], "a resend is the same bytes, not sealed again")
        self.assertEqual(server.seen[0][:4], b"FSQ1")
        self.assertNotIn(b"ping", server.seen[0], "the request is encrypted")

    def test_wrong_key_gets_no_reply(self):
        server = _SealedUdpServer("k1", "s" * 32)
        server.start()
        c = UdpClient("127.0.0.1", server.port, key_id="k1", secret="t" * 32, transport="tls",
                      timeout=0.6, retransmit=0.1)
        with self.assertRaises(FerryError) as e:
            c.ping()
        self.assertEqual(e.exception.code, "timeout")


class _OneShotServer(threading.Thread):
    """Accepts one connection, sends `frames` (v1 frames, at once), reads
    what comes for a moment, and closes."""

    def __init__(self, *frames):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frames = frames
        self.first = None

    def run(self):
        conn, _ = self.listener.accept()
        with conn:
            for f in self.frames:
                conn.sendall(ferry_client._encode_head(f))
            conn.settimeout(0.5)
            try:  # all of it, so that closing sends FIN, not RST
                self.first = conn.recv(1)
                while conn.recv(65536):
                    pass
            except OSError:
                pass
        self.listener.close()


HELLO = {"type": "hello", "proto": 1, "server": "ferryd", "nonce": "00" * 32, "auth": ["hmac-sha256"]}


class ServersWithoutTlsTests(unittest.TestCase):
    def connect(self, server, transport):
        server.start()
        try:
            with self.assertRaises(FerryError) as e:
                Client("127.0.0.1", server.port, key_id="k", secret="s" * 32, transport=transport, connect_timeout=5)
        finally:
            server.join(5)
        return e.exception

    def test_tls_required_says_what_to_do(self):
        e = self.connect(_OneShotServer({"type": "error", "code": "tls-required", "message": "plaintext refused"}),
                         "plaintext")
        self.assertEqual(e.code, "tls-required")
        self.assertIn("transport='tls'", e.message)
        self.assertTrue(e.fatal)

    def test_a_v1_only_server_answering_a_client_hello(self):
        # As a ferryd without TLS: its hello at accept, then an error for
        # the ClientHello it read as a frame.
        server = _OneShotServer(HELLO, {"type": "error", "code": "frame-too-large", "message": "too long"})
        e = self.connect(server, "tls")
        self.assertEqual(e.code, "tls")
        self.assertIn("does not offer TLS", e.message)
        self.assertEqual(server.first, b"\x16", "the ClientHello goes first, without waiting")

    def test_too_many_connections_before_tls(self):
        # The one clear error a server sends before it reads anything.
        e = self.connect(_OneShotServer({"type": "error", "code": "too-many-connections", "message": "full"}), "tls")
        self.assertEqual((e.code, e.message, e.fatal), ("too-many-connections", "full", True))

    def test_a_server_that_closes(self):
        e = self.connect(_OneShotServer(HELLO), "tls")
        self.assertEqual(e.code, "tls")
        self.assertIn("closed the connection during the TLS handshake", e.message)


def tls_client(port=None, **kw):
    kw.setdefault("keys", KEYS)
    return Client(HOST, port or TLS_PORT, connect_timeout=10, io_timeout=30, transport="tls", **kw)


@unittest.skipUnless(TLS_PORT and KEYS and ROOT, "needs a TLS server: run through cargo test --test python_tls")
class TlsTests(unittest.TestCase):
    def setUp(self):
        self.c = tls_client()

    def tearDown(self):
        self.c.close()

    def test_transport_and_cipher(self):
        self.assertEqual(self.c.transport, "tls")
        self.assertIn(self.c.cipher, ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                      "TLS_CHACHA20_POLY1305_SHA256"))
        self.assertTrue(self.c.server.startswith("ferryd"), self.c.server)
        self.assertLess(self.c.ping(), 5)

    def test_exec_output_status_and_large_output(self):
        r = self.c.run("printf 'out\\n'; printf 'err\\n' >&2; exit 3")
        self.assertEqual((r.code, r.stdout, r.stderr), (3, b"out\n", b"err\n"))
        r = self.c.run("head -c 3000000 /dev/zero | tr '\\0' x")
        self.assertEqual(r.stdout, b"x" * 3000000)

    def test_stdin_while_output_flows(self):
        data = os.urandom(3 * 1024 * 1024 + 7)
        r = self.c.run("cat", stdin=data)
        self.assertEqual((r.code, len(r.stdout)), (0, len(data)))
        self.assertEqual(r.stdout, data)

    def test_signal_from_a_callback(self):
        def on_out(chunk):
            self.c.signal("TERM")
        r = self.c.run("echo ready; sleep 20", on_stdout=on_out)
        self.assertEqual(r.signal, 15)

    def test_put_and_get(self):
        data = os.urandom(2 * 1024 * 1024 + 3)
        ok = self.c.put(data, "tls-put.bin", mode=0o600)
        self.assertEqual(ok["sha256"], hashlib.sha256(data).hexdigest())
        with open(os.path.join(ROOT, "tls-put.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src.bin")
            with open(src, "wb") as f:
                f.write(data[::-1])
            self.c.put(src, "tls-put-path.bin")  # no sendfile under TLS: sent by hand
            dst = os.path.join(d, "got.bin")
            header = self.c.get("tls-put-path.bin", dst)
            self.assertEqual(header["sha256"], hashlib.sha256(data[::-1]).hexdigest())
            with open(dst, "rb") as f:
                self.assertEqual(f.read(), data[::-1])
        self.assertEqual(self.c.stat("tls-put.bin")["file_size"], len(data))

    def test_errors_keep_the_connection(self):
        with self.assertRaises(FerryError) as e:
            self.c.stat("missing-file")
        self.assertEqual(e.exception.code, "not-found")
        self.assertEqual(self.c.run("echo still").stdout, b"still\n")

    def test_environment_chooses_tls(self):
        with mock.patch.dict(os.environ, {"FERRY_TRANSPORT": "tls"}):
            with Client(HOST, TLS_PORT, keys=KEYS, connect_timeout=10) as c:
                self.assertEqual(c.transport, "tls")
                self.assertEqual(c.run(["echo", "env"]).stdout, b"env\n")


@unittest.skipUnless(TLS_PORT and KEYS, "needs a TLS server")
class TlsAuthTests(unittest.TestCase):
    def test_wrong_secret_fails_before_anything_is_sent(self):
        key_id, _ = ferry_client.load_key(KEYS)
        with self.assertRaises(FerryError) as e:
            tls_client(keys=None, key_id=key_id, secret="0" * 64)
        self.assertEqual(e.exception.code, "auth-failed")
        self.assertEqual(e.exception.message, f"the server does not hold key {key_id} as given here (another secret, or no such key): wrong key?")
        self.assertTrue(e.exception.fatal)

    def test_unknown_key_id(self):
        with self.assertRaises(FerryError) as e:
            tls_client(keys=None, key_id="nobody", secret="x" * 32)
        self.assertEqual(e.exception.code, "auth-failed")
        self.assertIn("nobody", e.exception.message)

    def test_a_long_key_id_goes_by_digest(self):
        with self.assertRaises(FerryError) as e:
            tls_client(keys=None, key_id="y" * 200, secret="x" * 32)
        self.assertEqual(e.exception.code, "auth-failed")

    @unittest.skipUnless(QUIET_PORT, "needs a TLS server that sends no hello first")
    def test_a_server_that_sends_nothing_first(self):
        with tls_client(QUIET_PORT) as c:
            self.assertEqual(c.run("echo quiet").stdout, b"quiet\n")

    @unittest.skipUnless(PLAIN_PORT, "needs a plaintext port")
    def test_plaintext_on_loopback_needs_no_cryptography(self):
        code = ("import sys, ferry_client\n"
                f"c = ferry_client.Client({HOST!r}, {PLAIN_PORT}, keys={KEYS!r})\n"
                "assert c.transport == 'plaintext' and c.cipher is None\n"
                "assert c.run('echo plain').stdout == b'plain\\n'\n"
                "c.close()\n"
                "assert 'cryptography' not in sys.modules, 'cryptography was imported'\n")
        env = dict(os.environ)
        env.pop("FERRY_TRANSPORT", None)
        subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True, env=env, timeout=60)


@unittest.skipUnless(SEALED_UDP_PORT and KEYS, "needs a ferryd that takes sealed datagrams")
class SealedUdpTests(unittest.TestCase):
    def test_sealed_ping_and_run(self):
        c = UdpClient(HOST, SEALED_UDP_PORT, keys=KEYS, transport="tls")
        self.assertLess(c.ping()["rtt"], 5)
        self.assertTrue(c.sealed)
        r = c.run("echo sealed; exit 2")
        self.assertEqual((r.code, r.stdout), (2, b"sealed\n"))

    def test_sealed_wrong_key_gets_silence(self):
        key_id, _ = ferry_client.load_key(KEYS)
        with self.assertRaises(FerryError) as e:
            UdpClient(HOST, SEALED_UDP_PORT, key_id=key_id, secret="z" * 64, timeout=0.8, transport="tls").ping()
        self.assertEqual(e.exception.code, "timeout")


if __name__ == "__main__":
    unittest.main()
