"""ferry_client: a client for ferryd, the ferry remote command and file daemon.

Python 3.9 or later.  Standard library only, but for TLS and sealed datagrams
(the default off loopback), which need the cryptography package.  The
protocol is ferry-protocol(7):
frames (u32 big-endian header length, JSON header, raw body), a mutual
HMAC-SHA256 handshake, exec with stdin and signals, get/put/list/stat, and the
datagram (UDP) mode.

    from ferry_client import Client, udp_ping

    with Client("127.0.0.1", 7075, keys="~/.config/ferry/keys") as c:
        r = c.run(["uname", "-a"])             # argv, no shell
        print(r.code, r.stdout)
        r = c.run("cat | wc -c", stdin=b"abc")  # a string runs through sh -c
        c.put(b"hello\\n", "greeting.txt", mode=0o644)
        c.get("greeting.txt", "/tmp/greeting.txt")

    udp_ping("127.0.0.1", 7075, keys="~/.config/ferry/keys")  # one datagram each way (ferryd --udp)

Errors from the server, and failures of the client's own checks (a digest
that does not match, a server that cannot prove it holds the key), raise
FerryError(code, message); its status is the exit status ferry(1) gives for
the same error (127 for spawn-failed, 1 for a file error, 255 otherwise).
Connection failures raise OSError, as sockets do.

Transports (ferry-protocol(7), TLS and Sealed datagrams): to a loopback
address the session runs in clear and datagrams are HMAC-tagged, with the
standard library only; to any other address the session runs inside TLS 1.3
keyed by the shared key and datagrams are sealed (AES-256-GCM), which needs
the cryptography package.  transport="tls" or "plaintext" (or the
environment's FERRY_TRANSPORT, as for ferry(1)) overrides the choice.
"""

import base64
import errno
import hashlib
import hmac
import io
import ipaddress
import json
import os
import socket
import ssl
import stat as _stat
import struct
import tempfile
import threading
import time

__all__ = [
    "FerryError", "Result", "Client", "UdpClient", "load_key", "default_keys_path",
    "connect", "udp_ping", "udp_run", "udp_stat", "DEFAULT_PORT", "TRANSPORTS",
    "derive_key", "sni_name", "tls_identity",
]

DEFAULT_PORT = 7075
PROTO = 1
CHUNK = 256 * 1024

try:  # BLAKE3 when the blake3 package is installed; the library stays stdlib-only without it.
    import blake3 as _blake3
except ImportError:  # pragma: no cover - depends on the environment
    _blake3 = None

#: The digests this client can compute, best first.
# A tree's files up to this size are read whole, their digest in the header
# (as ferry put -r batches them); bigger ones get a trailer.
TREE_BATCH = 256 * 1024
DIGESTS = (("blake3",) if _blake3 is not None else ()) + ("sha256",)


def _hasher(digest):
    """A hashlib-style object for "sha256" or "blake3" (None for "none")."""
    if digest == "sha256":
        return hashlib.sha256()
    if digest == "blake3":
        if _blake3 is None:
            raise ValueError("the blake3 digest needs the blake3 package (pip install blake3)")
        return _blake3.blake3()
    if digest == "none":
        return None
    raise ValueError(f"digest is 'blake3', 'sha256', 'none' or None (the best), not {digest!r}")
MAX_HEADER = 65536
SIGNALS = ("TERM", "KILL", "INT", "HUP")


NAME_MAX = 255


def _local_dest(remote, local):
    """LOCAL as cp and scp read it: an existing directory (or a path ending
    in /) means REMOTE's name inside it.  The result is checked before
    anything is fetched: a directory or device there is refused."""
    if local.endswith("/") or os.path.isdir(local):
        name = os.path.basename(os.fsdecode(remote).rstrip("/"))
        if name in ("", ".", ".."):
            raise FerryError("bad-path", f"{remote!r} names no file to name a local one after")
        local = os.path.join(local, name)
    _check_dest(local)
    return local


def _check_dest(local):
    """A destination is absent, a regular file, or a symbolic link that the
    finished file replaces (never follows)."""
    try:
        st = os.lstat(local)
    except FileNotFoundError:
        return
    if _stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", local)
    if not (_stat.S_ISREG(st.st_mode) or _stat.S_ISLNK(st.st_mode)):
        raise FerryError("bad-path", f"{local}: exists and is not a regular file; not touching it")


def _part_path(local):
    """LOCAL.part, or for a name too long for that, the name cut short with
    a hash of the whole name (the same as the ferry CLI's)."""
    head, name = os.path.split(local)
    b = os.fsencode(name)
    if len(b) + 5 > NAME_MAX:
        digest = hashlib.sha256(b).hexdigest()[:16].encode()
        b = b[: NAME_MAX - 1 - 16 - 5] + b"~" + digest
    return os.path.join(head, os.fsdecode(b + b".part"))


def _open_own(path, flags):
    """Opens an existing file with O_NOFOLLOW and checks it is a regular
    file of ours."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FerryError("bad-path", f"{path}: is a symbolic link; not touching it") from None
        raise
    st = os.fstat(fd)
    if not _stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise FerryError("bad-path", f"{path}: not a regular file of ours; not touching it")
    os.set_blocking(fd, True)
    return fd


def _create_part(part):
    """A new .part: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600.  A stale one of
    ours is replaced; a link or another user's file is refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, 0o600)
    except FileExistsError:
        if _stat.S_ISLNK(os.lstat(part).st_mode):
            raise FerryError("bad-path", f"{part}: is a symbolic link; not touching it") from None
        os.close(_open_own(part, os.O_WRONLY))
        os.unlink(part)
        return os.open(part, flags, 0o600)


def _default_mode():
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class FerryError(Exception):
    """An error reply of the server, or a failed check of the client.

    code is the protocol's kebab-case code (not-found, bad-path,
    auth-failed...) or one of the client's own: digest-mismatch (a get whose
    bytes do not match the server's SHA-256, or a put the server stored
    differently), auth-failed (the server's proof is wrong), protocol (an
    unexpected frame), bad-keys (an unusable keys file), timeout (no UDP
    reply), tls (a TLS handshake that failed, or a server without TLS),
    tls-unavailable (TLS without the cryptography package).  A wrong key
    over TLS is auth-failed ("the server does not hold key ID as given
    here (another secret, or no such key): wrong key?").  fatal is True when the server closes the connection
    after it.
    """

    FATAL = frozenset({"bad-frame", "frame-too-large", "auth-required", "auth-failed",
                       "too-many-connections", "shutting-down", "idle-timeout", "protocol",
                       "tls", "tls-required"})

    def __init__(self, code, message="", header=None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.header = header or {}

    #: Codes for which ferry(1) exits 1: a file request's remote error, or a
    #: digest that does not match.
    FILE_ERRORS = frozenset({"bad-path", "not-found", "permission-denied", "is-a-directory",
                             "not-a-directory", "digest-mismatch", "too-large", "read-only",
                             "no-space", "io-error"})

    @property
    def fatal(self):
        return self.code in self.FATAL

    @property
    def status(self):
        """The exit status ferry(1) gives for this error: 127 for
        spawn-failed (as a shell says "not found"), 1 for a file error
        (FILE_ERRORS), 255 for the rest (connection, authentication,
        protocol, a refused exec)."""
        if self.code == "spawn-failed":
            return 127
        if self.code in self.FILE_ERRORS:
            return 1
        return 255


class Result:
    """How a command ended: code (None when a signal ended it), signal (the
    number, or None), stdout and stderr (bytes; empty when callbacks took
    them), timed_out; for datagrams also truncated, stdout_total and
    stderr_total."""

    __slots__ = ("code", "signal", "stdout", "stderr", "timed_out", "truncated",
                 "stdout_total", "stderr_total")

    def __init__(self, code, signal, stdout=b"", stderr=b"", timed_out=False,
                 truncated=False, stdout_total=None, stderr_total=None):
        self.code = code
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.truncated = truncated
        self.stdout_total = len(stdout) if stdout_total is None else stdout_total
        self.stderr_total = len(stderr) if stderr_total is None else stderr_total

    @property
    def ok(self):
        return self.code == 0

    @property
    def status(self):
        """A shell-style status: the code, or 128 + the signal number."""
        return self.code if self.code is not None else 128 + (self.signal or 0)

    def __repr__(self):
        return (f"Result(code={self.code!r}, signal={self.signal!r}, timed_out={self.timed_out!r}, "
                f"stdout={self.stdout[:60]!r}, stderr={self.stderr[:60]!r})")


# ---- keys -------------------------------------------------------------------------

def default_keys_path():
    """The file ferry(1) reads: $FERRY_KEYS, else the first that exists of
    ~/.config/ferry/keys and /etc/ferry/keys."""
    env = os.environ.get("FERRY_KEYS")
    if env:
        return os.path.expanduser(env)
    for p in (os.path.expanduser("~/.config/ferry/keys"), "/etc/ferry/keys"):
        if os.path.exists(p):
            return p
    return os.path.expanduser("~/.config/ferry/keys")


def load_key(path=None, key_id=None):
    """(key_id, secret) from a keys file (ferry-keys(5)): the key named
    key_id, else the first.  The file must not be readable by group or
    others, as for ferry(1)."""
    path = os.path.expanduser(os.fspath(path)) if path is not None else default_keys_path()
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise FerryError("bad-keys", f"keys file {path}: {e.strerror or e}") from None
    if st.st_mode & 0o077:
        raise FerryError("bad-keys", f"keys file {path} is accessible to group or others: run 'chmod 600 {path}'")
    keys = []
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 2 or len(words[1]) < 16:
            raise FerryError("bad-keys", f"keys file {path}, line {n}: expected 'KEY_ID SECRET' (a secret of 16 characters or more)")
        keys.append((words[0], words[1]))
    if not keys:
        raise FerryError("bad-keys", f"keys file {path} holds no key")
    if key_id is None:
        return keys[0]
    for k in keys:
        if k[0] == key_id:
            return k
    raise FerryError("bad-keys", f"keys file {path} has no key {key_id!r}")


def _resolve_key(keys, key_id, secret):
    if secret is not None:
        if not key_id:
            raise ValueError("a secret needs its key_id")
        return key_id, secret
    return load_key(keys, key_id)


def _mac(secret, *parts):
    return hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def _argv_or_cmd(command):
    if command is None:
        raise ValueError("no command (only a terminal, pty=..., runs the login shell)")
    if isinstance(command, str):
        return {"cmd": command}
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in command]
    if not argv:
        raise ValueError("an empty argv")
    return {"argv": argv}


def _pty_fields(pty):
    """An exec's pty field: True for a 24x80 dumb terminal, or a dict."""
    if pty is True:
        pty = {}
    if not isinstance(pty, dict):
        raise ValueError("pty: True or a dict with term, rows and cols")
    return {"term": str(pty.get("term") or "dumb"), "rows": int(pty.get("rows", 24)),
            "cols": int(pty.get("cols", 80))}


def _exec_request(command, env, cwd, timeout, login_ok=False):
    """An exec request's header (stdin aside), the same over TCP and UDP.
    With login_ok (a terminal), no command is the login shell."""
    if command is None and login_ok:
        req = {"type": "exec"}
    else:
        req = {"type": "exec", **_argv_or_cmd(command)}
    if env:
        req["env"] = {str(k): str(v) for k, v in env.items()}
    if cwd is not None:
        req["cwd"] = os.fsdecode(cwd)
    if timeout is not None:
        req["timeout"] = timeout
    return req


def _encode_head(header):
    """A header's wire form: u32 big-endian length, then compact JSON."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head


def _decode_head(raw):
    """The header in raw: a JSON object with a string type, else None.
    Raises ValueError when raw is not JSON at all."""
    header = json.loads(raw)
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        return None
    return header


def _read_frame(read, body=True):
    """One frame, read through read(n) (exactly n bytes, or it raises):
    (header, body).  The only frame reader, for a TCP stream and for the
    frame inside a reply datagram alike.  A length outside 1..MAX_HEADER,
    a header that is not an object with a string type, or a size that is
    not a count of bytes raises FerryError("protocol"); a header that is
    not JSON raises ValueError.  With body=False the body is left unread."""
    (length,) = struct.unpack(">I", read(4))
    if not 1 <= length <= MAX_HEADER:
        raise FerryError("protocol", f"a frame header of {length} bytes")
    header = _decode_head(read(length))
    if header is None:
        raise FerryError("protocol", "a frame header that is not an object with a type")
    size = header.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FerryError("protocol", f"a frame size of {size!r}")
    return header, (read(size) if body else None)


class _Buffer:
    """read(n) over bytes already received (a datagram), for _read_frame."""

    def __init__(self, data):
        self._data, self._at = memoryview(data), 0

    def read(self, n):
        if self._at + n > len(self._data):
            raise EOFError("the datagram ends inside its frame")
        self._at += n
        return bytes(self._data[self._at - n:self._at])

    def left(self):
        return len(self._data) - self._at


def _is_bytes(x):
    return isinstance(x, (bytes, bytearray, memoryview))


# ---- TCP ---------------------------------------------------------------------------

class Client:
    """One authenticated connection to ferryd.

    Client(host, port=7075, keys=None, key_id=None, secret=None,
           connect_timeout=10.0, io_timeout=None)

    keys is a keys file path (default: as ferry(1) finds it); key_id picks a
    key in it (default: the first); or give key_id and secret directly.
    connect_timeout bounds the TCP connect and the handshakes; io_timeout, when
    not None, bounds every later wait for the server (a command that prints
    nothing for longer fails with socket.timeout, so leave it None for long
    commands).  transport: "auto" (the default, or FERRY_TRANSPORT when set):
    plaintext to a loopback address, TLS to any other; "tls" or "plaintext"
    forces one.  After connecting, transport says which was used, and cipher
    the TLS cipher suite (None in plaintext).  Requests are served one at a
    time; signal() may be called from another thread (or an output callback)
    while run() waits.
    """

    def __init__(self, host, port=DEFAULT_PORT, keys=None, key_id=None, secret=None,
                 connect_timeout=10.0, io_timeout=None, transport=None):
        self.host, self.port = host, int(port)
        self.key_id, self._secret = _resolve_key(keys, key_id, secret)
        mode = _transport_mode(transport)
        self._wlock = threading.Lock()
        self._running = False
        self._pty_running = False
        self._io_timeout = io_timeout
        self.cipher = None
        self.sock = socket.create_connection((host, self.port), timeout=connect_timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.transport = _pick_transport(mode, self.sock.getpeername()[0])
            if self.transport == "tls":
                self.sock = _TlsSocket(self.sock, self.key_id, self._secret, f"{host}:{self.port}")
                self.cipher = self.sock.cipher
            self._rfile = self.sock.makefile("rb", buffering=CHUNK)
            self._handshake()
            self.sock.settimeout(io_timeout)
        except BaseException:
            self.sock.close()
            raise

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Says bye and closes the connection (a running command gets TERM)."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            if not self._running:
                sock.settimeout(1.0)
                self._send({"type": "bye"}, sock=sock)
        except OSError:
            pass
        try:
            self._rfile.close()
        finally:
            sock.close()

    def _abort(self):
        """Closes the connection at once (no bye): it is out of step or gone."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- frames
    def _send(self, header, body=b"", sock=None):
        header = dict(header)
        if body or "size" in header:
            header["size"] = len(body)
        data = _encode_head(header)
        with self._wlock:
            s = sock or self.sock
            if s is None:
                raise FerryError("protocol", "the connection is closed")
            if len(body) <= 65536:
                s.sendall(data + bytes(body))
            else:
                s.sendall(data)
                s.sendall(body)

    def _read(self, n):
        if self.sock is None:
            raise FerryError("protocol", "the connection is closed")
        data = self._rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("ferryd closed the connection")
        return data

    def _recv_header(self):
        return _read_frame(self._read, body=False)[0]

    def _recv(self):
        return _read_frame(self._read)

    def _skip_body(self, header):
        n = header.get("size", 0)
        while n:
            n -= len(self._read(min(n, CHUNK)))

    def _read_body_into(self, header, f, hasher):
        """Reads header's body in chunks into the file f, each chunk also
        into hasher (when not None)."""
        left = header.get("size", 0)
        while left:
            chunk = self._read(min(left, CHUNK))
            left -= len(chunk)
            f.write(chunk)
            if hasher is not None:
                hasher.update(chunk)

    @staticmethod
    def _raise(header):
        raise FerryError(header.get("code", "unknown"), header.get("message", ""), header)

    def _expect(self, *types, body=True):
        """The next frame of one of types (unknown ones skipped); errors raise.
        With body=False its body is left for the caller to read."""
        while True:
            header = self._recv_header()
            t = header["type"]
            if t in types:
                return header, (self._read(header.get("size", 0)) if body else None)
            self._skip_body(header)
            if t == "error":
                self._raise(header)
            if t in ("hello", "welcome", "pong", "stdout", "stderr", "exit", "file", "done",
                     "ok", "listing", "stat"):
                raise FerryError("protocol", f"unexpected {t} frame", header)
            # a type this client does not know: skipped, as the protocol says

    def _handshake(self):
        try:
            hello, _ = self._recv()
        except ssl.SSLError as e:  # (TLS) the server refused our identity after the handshake
            raise _tls_failure(e, self.key_id, f"{self.host}:{self.port}") from None
        if hello["type"] == "error":
            if hello.get("code") == "tls-required":
                raise FerryError("tls-required", f"{hello.get('message') or 'the server requires TLS'} "
                                                 "(connect with transport='tls')", hello)
            self._raise(hello)
        if hello["type"] != "hello" or hello.get("proto") != PROTO or "hmac-sha256" not in (hello.get("auth") or []):
            raise FerryError("protocol", f"not a ferry protocol {PROTO} server: {hello}")
        self.server = hello.get("server", "")
        # The digests the server computes; None from an older server (sha256
        # only, and no trailer frames).
        ds = hello.get("digests")
        self.digests = [d for d in ds if isinstance(d, str)] if isinstance(ds, list) else None
        sn = hello.get("nonce", "")
        cn = os.urandom(32).hex()
        self._send({"type": "auth", "key_id": self.key_id, "nonce": cn,
                    "mac": _mac(self._secret, "ferry-client", sn, cn)})
        welcome, _ = self._expect("welcome")
        mac = welcome.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac.encode(), _mac(self._secret, "ferry-server", cn, sn).encode()):
            raise FerryError("auth-failed", "the server did not prove that it holds the key")

    # -- requests
    def ping(self):
        """One round trip; its time in seconds."""
        t = time.monotonic()
        self._send({"type": "ping"})
        self._expect("pong")
        return time.monotonic() - t

    def run(self, command, stdin=None, env=None, cwd=None, timeout=None,
            on_stdout=None, on_stderr=None, pty=None):
        """Runs command: a str runs through the server's sh -c, a list as argv.

        stdin: None (the command reads /dev/null), bytes, or a binary file
        object read to its end in CHUNK pieces (by a thread, so output keeps
        flowing), or True: open, fed only by send_input() and end_input().  env: a dict of variables to add; cwd: a directory relative
        to the served root; timeout: seconds, after which the server sends
        TERM (then KILL) and the result says timed_out.  on_stdout/on_stderr:
        called with each chunk of bytes as it arrives; without them output is
        collected into the result.  Raises FerryError when the command cannot
        start (spawn-failed, bad-path, not-allowed...).

        pty: run on a pseudo-terminal the server opens (ferry run -t): True
        for a 24x80 "dumb" one, or a dict with "term", "rows" and "cols".
        command may then be None, for the login shell.  What the terminal
        shows comes to on_stdout (there is no separate stderr); stdin is
        typed on it (its end is sent as the terminal's ^D); send_input()
        types more from a callback, resize() changes its size.  A server
        with allow_pty = false refuses with not-allowed."""
        if pty is not None and pty is not False:
            req = _exec_request(command, env, cwd, timeout, login_ok=True)
            req["pty"] = _pty_fields(pty)
        else:
            req = _exec_request(command, env, cwd, timeout)
        if stdin is not None:
            req["stdin"] = True
        out, err = [], []
        on_stdout = on_stdout or out.append
        on_stderr = on_stderr or err.append
        self._send(req)
        self._running = True
        self._pty_running = "pty" in req
        writer = None
        writer_error = []
        if stdin is not None and stdin is not True:
            writer = threading.Thread(target=self._feed, args=(stdin, writer_error), daemon=True)
            writer.start()
        try:
            while True:
                header, body = self._recv()
                t = header["type"]
                if t == "stdout":
                    on_stdout(body)
                elif t == "stderr":
                    on_stderr(body)
                elif t == "exit":
                    break
                elif t == "error":
                    error = FerryError(header.get("code", "unknown"), header.get("message", ""), header)
                    if not error.fatal:
                        self._end_run(on_stdout, on_stderr)
                    raise error
        except FerryError as e:
            if not e.header or e.fatal:
                self._abort()
            raise
        except BaseException:
            # A callback failed or the connection broke: the rest of the
            # command's frames would be read as the next request's answers.
            self._abort()
            raise
        finally:
            self._running = False
            self._pty_running = False
            if writer is not None:
                writer.join()
        if writer_error and not isinstance(writer_error[0], OSError):
            raise writer_error[0]
        return Result(header.get("code"), header.get("signal"), b"".join(out), b"".join(err),
                      bool(header.get("timed_out")))

    #: How long _end_run waits for a killed command's last replies.
    END_RUN_WAIT = 10.0

    def _end_run(self, on_stdout, on_stderr):
        """An error came while run() waited: the exec's own refusal (nothing
        runs), or the answer to a frame sent during the run (the command goes
        on, and its output and exit would be read as the next request's
        replies).  Either way the run ends here: input stops, the command
        (if any) gets KILL, and a ping marks the end: the server answers it
        once no command runs.  The output until then still goes to the
        callbacks.  A server that does not answer in END_RUN_WAIT seconds
        loses the connection, which can then not be trusted."""
        self._running = False
        try:
            self.sock.settimeout(self.END_RUN_WAIT)
            self._send({"type": "signal", "signal": "KILL"})
            self._send({"type": "ping"})
            while True:
                header, body = self._recv()
                t = header["type"]
                if t == "pong":
                    break
                if t == "stdout":
                    on_stdout(body)
                elif t == "stderr":
                    on_stderr(body)
                elif t == "error" and header.get("code") in FerryError.FATAL:
                    self._abort()
                    return
            self.sock.settimeout(self._io_timeout)
        except BaseException:
            self._abort()
            raise

    def _feed(self, stdin, errors):
        try:
            if _is_bytes(stdin):
                view = memoryview(stdin)
                for i in range(0, len(view), CHUNK):
                    if not self._running:
                        return
                    self._send({"type": "stdin"}, view[i:i + CHUNK])
            else:
                while self._running:
                    chunk = stdin.read(CHUNK)
                    if not chunk:
                        break
                    self._send({"type": "stdin"}, chunk)
            if self._running:
                self._send({"type": "stdin", "size": 0})
        except BaseException as e:  # reported by run() once the command ends
            errors.append(e)
            if not isinstance(e, OSError):
                try:  # end the input, so the command is not left waiting for it
                    self._send({"type": "stdin", "size": 0})
                except OSError:
                    pass

    def send_input(self, data):
        """Sends bytes to the running command's standard input (on a
        terminal: types them), from another thread or an output callback
        while run() waits.  Dropped by the server when nothing runs."""
        data = data.encode() if isinstance(data, str) else bytes(data)
        if data:
            self._send({"type": "stdin"}, data)

    def end_input(self):
        """Ends the running command's standard input (after send_input with
        stdin=True); on a terminal the server types its end-of-file (^D)."""
        self._send({"type": "stdin", "size": 0})

    def resize(self, rows, cols):
        """Sets the window size of the running command's terminal (from a
        callback or another thread while run(..., pty=...) waits).  Refused
        here, with ValueError, when no command runs on a terminal: the server
        would answer it with an error in the middle of the run."""
        if not self._pty_running:
            raise ValueError("resize: no command runs on a terminal (run with pty=...)")
        rows, cols = int(rows), int(cols)
        if not (0 <= rows <= 65535 and 0 <= cols <= 65535):
            raise ValueError("resize: rows and cols from 0 to 65535")
        self._send({"type": "resize", "rows": rows, "cols": cols})

    def signal(self, name):
        """Sends TERM, KILL, INT or HUP to the running command's process group.
        Call it from another thread or from an output callback while run()
        waits; a signal when nothing runs is dropped by the server."""
        name = name.upper().removeprefix("SIG")
        if name not in SIGNALS:
            raise ValueError(f"signal {name}: one of {', '.join(SIGNALS)}")
        self._send({"type": "signal", "signal": name})

    def stat(self, path):
        """The server's stat reply: path, kind, file_size, mode, mtime."""
        self._send({"type": "stat", "path": os.fsdecode(path)})
        return self._expect("stat")[0]

    def list(self, path="."):
        """A directory's entries: dicts with name, kind, file_size, mode, mtime."""
        self._send({"type": "list", "path": os.fsdecode(path)})
        _, body = self._expect("listing")
        return json.loads(body)

    def best_digest(self):
        """The digest transfers use by default: blake3 when both the server
        announces it and the blake3 package is installed, else sha256."""
        offered = self.digests if self.digests is not None else ["sha256"]
        return next((d for d in DIGESTS if d in offered), "sha256")

    def _digest(self, digest):
        """The digest a transfer uses: digest, or best_digest(); one the
        server does not announce is refused before anything is sent."""
        if digest is None:
            digest = self.best_digest()
        _hasher(digest)  # ValueError for an unknown name or a missing package
        offered = self.digests if self.digests is not None else ["sha256"]
        if digest != "none" and digest not in offered:
            raise FerryError("bad-request", f"the server does not offer the {digest} digest (it offers {', '.join(offered)})")
        return digest

    def get(self, remote, local, offset=0, digest=None):
        """Fetches remote into local: a path (written to LOCAL.part, checked,
        then renamed; with offset > 0 the first offset bytes of LOCAL are kept
        and the rest written after them) or a binary file object (for an
        offset > 0 it must be readable and seekable, so the whole-file digest
        can be checked).  digest: "blake3", "sha256" or "none"; by default
        best_digest().  The digest of the whole file is checked, and a
        mismatch raises FerryError("digest-mismatch"); with "none" nothing is
        checked.  Returns the file header (file_size, mode, mtime...) with
        "digest" naming the digest and, when checked, its hex under that name."""
        digest = self._digest(digest)
        h = _hasher(digest)
        own = not hasattr(local, "write")
        part = None
        if own:
            local = _local_dest(remote, os.fspath(local))
            if offset:
                f = os.fdopen(_open_own(local, os.O_RDWR), "r+b")
            else:
                part = _part_path(local)
                f = os.fdopen(_create_part(part), "wb")
        else:
            f = local
        try:
            if offset and h is not None:
                f.seek(0)
                left = offset
                while left:
                    chunk = f.read(min(left, CHUNK))
                    if not chunk:
                        raise FerryError("bad-request", f"the local file is shorter than the offset {offset}")
                    h.update(chunk)
                    left -= len(chunk)
            if offset and own:
                f.seek(offset)
                f.truncate()
            req = {"type": "get", "path": os.fsdecode(remote), "offset": offset}
            if digest != "sha256":  # the default, and all an older server knows
                req["digest"] = digest
            self._send(req)
            header = self._expect("file", body=False)[0]
            self._read_body_into(header, f, h)
            done = self._expect("done")[0]
            header["digest"] = digest
            if h is not None:
                want = done.get(digest, "")
                if not hmac.compare_digest(h.hexdigest(), str(want)):
                    raise FerryError("digest-mismatch", f"{remote}: {digest} {h.hexdigest()} but the server says {want}")
                header[digest] = want
            if own:
                f.flush()
                os.fsync(f.fileno())
        except BaseException as e:
            if not isinstance(e, FerryError) or e.fatal:
                self._abort()  # stopped inside the file frame: out of step
            if own:
                f.close()
                if part is not None:
                    try:
                        os.unlink(part)
                    except OSError:
                        pass
            raise
        if own:
            if part is not None:
                os.fchmod(f.fileno(), _default_mode())
            f.close()
            if part is not None:
                _check_dest(local)
                os.replace(part, local)
        return header

    def put(self, source, remote, mode=None, digest=None):
        """Stores source at remote, atomically on the server.  source is
        bytes, a local path, or a binary file object: a regular file from its
        position to its end is sent sized; anything else (a pipe, a socket, a
        stream) is sent as a streaming put.  digest: "blake3", "sha256" or
        "none"; by default best_digest().  To a server that announces digests
        the file is read once, hashed as it is sent, and the digest follows
        the body in a trailer frame, checked by the server before it renames;
        an older server gets the SHA-256 in the header (a file is then read
        twice, the second time by sendfile) or, streaming, its own SHA-256 is
        compared after.  mode: permission bits, default that of the file
        replaced (or 0644).  Returns the server's ok header (file_size,
        digest and its hex)."""
        digest = self._digest(digest)
        req = {"type": "put", "path": os.fsdecode(remote)}
        if mode is not None:
            req["mode"] = int(mode)
        if _is_bytes(source):
            if digest == "none":
                req["digest"] = "none"
            else:
                h = _hasher(digest)
                h.update(source)
                req[digest] = h.hexdigest()
            self._send(req, source)
            return self._expect("ok")[0]
        if hasattr(source, "read"):
            return self._put_file(req, source, digest)
        with open(source, "rb") as f:
            return self._put_file(req, f, digest)

    def _trailers(self, digest):
        """True when the digest goes in a trailer: the server announced digests."""
        return self.digests is not None and digest != "none"

    def _put_trailer(self, req, f, size, digest):
        """Sends a sized put of size bytes of f, read once and hashed as it is
        sent, then its trailer (the reply is the caller's to read)."""
        req.update(size=size, digest=digest, trailer=True)
        h = _hasher(digest)
        head = json.dumps(req, separators=(",", ":")).encode()
        with self._wlock:
            self.sock.sendall(struct.pack(">I", len(head)) + head)
            left = size
            while left:
                chunk = f.read(min(left, CHUNK))
                if not chunk:
                    self._abort()
                    raise FerryError("io-error", "the local file shrank while it was sent")
                h.update(chunk)
                self.sock.sendall(chunk)
                left -= len(chunk)
        self._send({"type": "trailer", digest: h.hexdigest()})

    def _put_file(self, req, f, digest):
        size = None
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            if _stat.S_ISREG(st.st_mode):
                start = f.tell()
                size = st.st_size - start
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass
        if size is None:
            return self._put_stream(req, f, digest)
        if self._trailers(digest):
            self._put_trailer(req, f, size, digest)
        else:
            self._put_sized(req, f, size, digest)
        return self._expect("ok")[0]

    def _put_sized(self, req, f, size, digest):
        """Sends a sized put of the size bytes of the regular file f from its
        position, the digest (unless "none") in the header, as to a server
        without trailers: f is read in chunks to hash it, then sent with
        sendfile (by hand where that fails), never held whole.  The reply is
        the caller's to read."""
        start = self._hash_sized(req, f, size, digest)
        self._send_sized(req, f, start, size)

    def _hash_sized(self, req, f, size, digest):
        """The first half of _put_sized: req gets the size and the digest of
        f's size bytes from its position (read in chunks); f is put back
        there, and that position returned.  Nothing is sent."""
        start = f.tell()
        req["size"] = size
        if digest == "none":
            req["digest"] = "none"
        else:
            h = _hasher(digest)
            left = size
            while left:
                chunk = f.read(min(left, CHUNK))
                if not chunk:
                    raise FerryError("io-error", "the local file shrank while it was read")
                h.update(chunk)
                left -= len(chunk)
            f.seek(start)
            req[digest] = h.hexdigest()
        return start

    def _send_sized(self, req, f, start, size):
        """The second half of _put_sized: the header, then the body."""
        head = json.dumps(req, separators=(",", ":")).encode()
        with self._wlock:
            self.sock.sendall(struct.pack(">I", len(head)) + head)
            sent = 0
            if size:
                try:
                    sent = self.sock.sendfile(f, start, size)
                except (OSError, AttributeError):
                    # sendfile may have moved part of it; send the rest by hand
                    f.seek(start + sent)
                while sent < size:
                    chunk = f.read(min(size - sent, CHUNK))
                    if not chunk:
                        raise FerryError("io-error", "the local file shrank while it was sent")
                    self.sock.sendall(chunk)
                    sent += len(chunk)

    def _put_stream(self, req, f, digest):
        req["stream"] = True
        trailer = self._trailers(digest)
        if trailer:
            req["digest"] = digest
            req["trailer"] = True
        elif digest == "none":
            req["digest"] = "none"
        h = _hasher(digest) if digest != "none" else None
        self._send(req)
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            if h is not None:
                h.update(chunk)
            self._send({"type": "data"}, chunk)
        self._send({"type": "data", "size": 0})
        if trailer:
            self._send({"type": "trailer", digest: h.hexdigest()})
        ok = self._expect("ok")[0]
        if not trailer and h is not None:
            # An older server: its sha256 of what it stored, compared here.
            theirs = str(ok.get(digest, ""))
            if not hmac.compare_digest(theirs, h.hexdigest()):
                raise FerryError("digest-mismatch", f"sent {digest} {h.hexdigest()} but the server stored {theirs}", ok)
        return ok

    # ---- trees (ferry-protocol(7), Trees) ----------------------------------------------

    def list_tree(self, path="."):
        """Every entry under path (list with recursive), parents first: dicts
        with name (the path under path), kind, file_size, mode, mtime, and for
        a link that stays inside the served root its target."""
        self._send({"type": "list", "path": os.fsdecode(path), "recursive": True})
        _, body = self._expect("listing")
        return json.loads(body)

    def _tree_reply(self, rel, failed):
        """Reads the reply to one pipelined tree request; a non-fatal error
        is added to failed as (rel, FerryError), a fatal one raised."""
        h = self._recv_header()
        self._skip_body(h)
        if h["type"] == "error":
            e = FerryError(h.get("code", "unknown"), h.get("message", ""), h)
            if e.fatal:
                raise e
            failed.append((rel, e))

    def _tree_dest(self, name, remote, is_dir=True):
        """Where put -r lands name on the server: inside remote when it ends
        in / or is a directory, else remote itself."""
        join = lambda base, rel: rel if base in ("", ".") else f"{base}/{rel}"
        if remote.endswith("/") and remote.rstrip("/"):
            return join(remote.rstrip("/"), name)
        try:
            st = self.stat(remote)
        except FerryError as e:
            if e.code == "not-found":
                return remote.rstrip("/") or "."
            raise
        if st.get("kind") == "dir":
            return join(remote.rstrip("/"), name)
        if is_dir:
            raise FerryError("not-a-directory", f"{remote}: exists on the server and is not a directory")
        return remote

    def put_tree(self, local, remote, window=64, digest=None):
        """Sends the directory local where ferry put -r puts it: remote ending
        in / or an existing directory takes the copy inside it under local's
        name, else remote becomes the copy (created as needed; what is there
        is replaced entry by entry).  Every file is a sized put with its
        digest, mode (no set-id bits) and mtime, every link a symlink request
        (refused with bad-path when it leads outside the served root), every
        directory a mkdir (deepest first, the last one syncing the server's
        file system), window requests in flight at most.  digest as for put
        (by default best_digest()): a file up to TREE_BATCH bytes carries it
        in its header; a bigger one, to a server that announces digests, is
        read once, hashed as it is sent, its digest in a trailer; to an older
        server (or with "none") it is read in chunks to hash it, then sent as
        put sends it, never held whole (a file that shrinks while it is
        hashed is reported in failed).  An entry
        that fails does not stop the rest; names that are not UTF-8, FIFOs,
        sockets, devices and unreadable entries here are reported and
        skipped.  A file is put as ferry put -r puts one.  Returns
        {"entries": n, "failed": [(path, FerryError), ...], "digest": name}."""
        digest = self._digest(digest)
        local = os.fsdecode(local)
        try:
            top = os.stat(local)
        except OSError as err:
            raise _os_error(local, err) from None
        name = os.path.basename(local.rstrip("/"))
        if name in ("", ".", ".."):
            name = os.path.basename(os.path.realpath(local))
        remote = self._tree_dest(name, os.fsdecode(remote), _stat.S_ISDIR(top.st_mode))
        if not _stat.S_ISDIR(top.st_mode):
            self.put(local, remote, mode=top.st_mode & 0o777, digest=digest)
            return {"entries": 1, "failed": [], "digest": digest}
        dirs, files, links, failed = [], [], [], []

        def walk(path, rel_top):
            try:
                names = sorted(os.listdir(path))
            except OSError as err:
                failed.append((rel_top or local, _os_error(rel_top or local, err)))
                return
            for name in names:
                rel = name if not rel_top else f"{rel_top}/{name}"
                full = os.path.join(path, name)
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    failed.append((rel, FerryError("bad-path", f"{_shown(rel)}: the name is not UTF-8: it cannot be sent")))
                    continue
                try:
                    st = os.lstat(full)
                    target = os.readlink(full) if _stat.S_ISLNK(st.st_mode) else None
                except OSError as err:
                    failed.append((rel, _os_error(rel, err)))
                    continue
                if target is not None:
                    try:
                        target.encode("utf-8")
                        links.append((rel, target))
                    except UnicodeEncodeError:
                        failed.append((rel, FerryError("bad-path", f"{_shown(rel)}: the link's target is not UTF-8")))
                elif _stat.S_ISDIR(st.st_mode):
                    dirs.append((rel, st))
                    walk(full, rel)
                elif _stat.S_ISREG(st.st_mode):
                    files.append((rel, st))
                else:
                    failed.append((rel, FerryError("skipped", f"{_shown(rel)}: not a regular file, directory or link: skipped")))

        walk(local, "")
        unsent = len(failed)
        join = lambda rel: rel if remote == "." else f"{remote}/{rel}"
        tree = os.urandom(8).hex()
        pending = []


        def sent(rel):
            pending.append(rel)
            while len(pending) > window:
                self._tree_reply(pending.pop(0), failed)

        for rel, st in files:
            req = {"type": "put", "path": join(rel), "mode": st.st_mode & 0o777, "mtime": int(st.st_mtime),
                   "tree": tree}
            try:
                f = open(os.path.join(local, rel), "rb")
            except OSError as err:
                failed.append((rel, _os_error(rel, err)))
                continue
            with f:
                size = os.fstat(f.fileno()).st_size
                if size > TREE_BATCH and self._trailers(digest):
                    self._put_trailer(req, f, size, digest)
                elif size > TREE_BATCH:
                    # Streamed as put streams it: hashed in chunks, then sent.
                    try:
                        start = self._hash_sized(req, f, size, digest)
                    except (OSError, FerryError) as err:
                        failed.append((rel, err if isinstance(err, FerryError) else _os_error(rel, err)))
                        continue
                    self._send_sized(req, f, start, size)
                else:
                    data = f.read()
                    h = _hasher(digest)
                    if h is None:
                        req["digest"] = "none"
                    else:
                        h.update(data)
                        req[digest] = h.hexdigest()
                    self._send(req, data)
            sent(rel)
        for rel, target in links:
            self._send({"type": "symlink", "path": join(rel), "target": target})
            sent(rel)
        for rel, st in reversed(dirs):
            self._send({"type": "mkdir", "path": join(rel), "mode": st.st_mode & 0o777, "mtime": int(st.st_mtime)})
            sent(rel)
        self._send({"type": "mkdir", "path": remote, "mode": top.st_mode & 0o777, "mtime": int(top.st_mtime),
                    "sync": True})
        sent(".")
        while pending:
            self._tree_reply(pending.pop(0), failed)

        return {"entries": len(files) + len(links) + len(dirs) + 1 + unsent, "failed": failed, "digest": digest}

    def get_tree(self, remote, local, window=64, digest=None):
        """Fetches the directory remote where ferry get -r puts it: local
        ending in / or an existing directory takes the copy inside it under
        remote's name, else local becomes the copy (created, with the missing
        directories on the way).  One recursive list, then window gets in
        flight at most, each file written to its .part, checked against the
        server's digest (as for get: by default best_digest(); "none" checks
        nothing), given its mode and mtime and renamed into place;
        links made when their target stays inside the tree (else bad-path);
        directories created, their modes and mtimes set last.  An entry that
        fails does not stop the rest (a directory the server cannot read, a
        name that is not UTF-8, each reported once).  A file is fetched as
        ferry get -r fetches one.  Returns {"entries": n, "failed": [(path,
        FerryError), ...], "digest": name}."""
        digest = self._digest(digest)
        remote, local = os.fsdecode(remote), os.fsdecode(local)
        top = self.stat(remote)
        name = os.path.basename(remote.rstrip("/"))
        if local.endswith("/") or os.path.isdir(local):
            if name in ("", ".", ".."):
                if top.get("kind") != "dir":
                    raise FerryError("bad-path", f"{remote!r} names no file to name a local one after")
            else:
                local = os.path.join(local, name)
        remote = remote.rstrip("/") or "."
        try:
            if os.path.dirname(local.rstrip("/")):
                os.makedirs(os.path.dirname(local.rstrip("/")), exist_ok=True)
            if top.get("kind") != "dir":
                self.get(remote, local, digest=digest)
                return {"entries": 1, "failed": [], "digest": digest}
            os.makedirs(local, exist_ok=True)
        except OSError as err:
            raise _os_error(local, err) from None
        entries = self.list_tree(remote)
        join = lambda rel: rel if remote == "." else f"{remote}/{rel}"
        failed = []
        plain = lambda rel: rel and not rel.startswith("/") and all(c not in ("", ".", "..") for c in rel.split("/"))
        files, dirs = [], []
        for e in entries:
            rel = e["name"]
            if "name_hex" in e:
                failed.append((rel, FerryError("bad-path", f"{_shown(bytes.fromhex(e['name_hex']))}: the name is not UTF-8: it cannot be asked for")))
            elif not plain(rel):
                failed.append((rel, FerryError("bad-path", f"{rel}: the server named an entry outside the tree")))
            elif e["kind"] == "dir":
                try:
                    os.makedirs(os.path.join(local, rel), exist_ok=True)
                    dirs.append(e)
                except OSError as err:
                    failed.append((rel, _os_error(rel, err)))
                    continue
                if "error" in e:
                    err = e["error"]
                    failed.append((rel, FerryError(err.get("code", "io-error"), err.get("message", ""), err)))
            elif e["kind"] == "file":
                files.append(e)
            elif e["kind"] == "other":
                failed.append((rel, FerryError("skipped", f"{rel}: not a regular file, directory or link: skipped")))
        asked = 0
        for i, e in enumerate(files):
            while asked < len(files) and asked - i < window:
                req = {"type": "get", "path": join(files[asked]["name"])}
                if digest != "sha256":  # the default, and all an older server knows
                    req["digest"] = digest
                self._send(req)
                asked += 1
            self._get_tree_file(e["name"], os.path.join(local, e["name"]), failed, digest)
        for e in entries:
            if e["kind"] != "link" or not plain(e["name"]) or "name_hex" in e:
                continue
            rel, target = e["name"], e.get("target")
            depth = len(rel.split("/")) - 1
            for c in (target or "/").split("/"):
                depth += -1 if c == ".." else (0 if c in ("", ".") else 1)
                if depth < 0:
                    break
            if target is None or target.startswith("/") or depth < 0:
                failed.append((rel, FerryError("bad-path", f"{rel}: the link leads outside the tree")))
                continue
            dest = os.path.join(local, rel)
            tmp = f"{dest}.ferry-link-{os.getpid()}"
            try:
                if os.path.isdir(dest) and not os.path.islink(dest):
                    raise IsADirectoryError(errno.EISDIR, "is a directory; not replacing it with a link")
                os.symlink(target, tmp)
                os.replace(tmp, dest)
            except OSError as err:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                failed.append((rel, _os_error(rel, err)))
        for e in reversed([dict(top, name=".")] + dirs):
            p = os.path.join(local, e["name"])
            try:
                os.chmod(p, e["mode"] & 0o777)
                os.utime(p, (e["mtime"], e["mtime"]))
            except OSError as err:
                failed.append((e["name"], _os_error(e["name"], err)))
        return {"entries": len(entries), "failed": failed, "digest": digest}

    def _get_tree_file(self, rel, dest, failed, digest):
        """Reads one pipelined get's reply into dest through its .part."""
        h = self._recv_header()
        if h["type"] == "error":
            self._skip_body(h)
            e = FerryError(h.get("code", "unknown"), h.get("message", ""), h)
            if e.fatal:
                raise e
            failed.append((rel, e))
            return
        if h["type"] != "file":
            raise FerryError("protocol", f"expected file, got {h['type']}", h)
        part = _part_path(dest)
        try:
            fd = _create_part(part)
        except (OSError, FerryError) as err:
            self._skip_body(h)
            self._expect("done")
            failed.append((rel, err if isinstance(err, FerryError) else FerryError("io-error", str(err))))
            return
        hasher = _hasher(digest)
        with os.fdopen(fd, "wb") as f:
            self._read_body_into(h, f, hasher)
            done = self._expect("done")[0]
            if hasher is not None and not hmac.compare_digest(hasher.hexdigest(), str(done.get(digest, ""))):
                f.close()
                os.unlink(part)
                msg = f"{rel}: {digest} {hasher.hexdigest()}, the server's is {done.get(digest)}"
                failed.append((rel, FerryError("digest-mismatch", msg)))
                return
            os.fchmod(f.fileno(), h.get("mode", 0o644) & 0o777)
        os.utime(part, (h.get("mtime", 0), h.get("mtime", 0)))
        os.replace(part, dest)


def _os_error(path, err):
    """A local OSError as a FerryError with the code a server would give."""
    code = {errno.ENOENT: "not-found", errno.EACCES: "permission-denied", errno.EPERM: "permission-denied",
            errno.ENOTDIR: "not-a-directory", errno.EISDIR: "is-a-directory", errno.EEXIST: "not-a-directory",
            errno.ENOSPC: "no-space"}.get(err.errno, "io-error")
    return FerryError(code, f"{_shown(path)}: {err.strerror or err}")


def _shown(path):
    """A path for a message: bytes that are not UTF-8 as \\ooo, as ferry does."""
    b = os.fsencode(path) if isinstance(path, str) else path
    out = []
    for part in b.decode("utf-8", "surrogateescape"):
        o = ord(part)
        out.append(f"\\{o - 0xDC00:03o}" if 0xDC80 <= o <= 0xDCFF else part)
    return "".join(out)


def connect(host, port=DEFAULT_PORT, **kw):
    """Client(host, port, **kw)."""
    return Client(host, port, **kw)


# ---- datagrams -----------------------------------------------------------------------

REQUEST_LABEL = b"ferry-udp-request|"
REPLY_LABEL = b"ferry-udp-reply|"
MAX_DATAGRAM = 65507


class UdpClient:
    """Single authenticated datagrams (ferry-protocol(7), Datagrams).

    Each request is one datagram with a fresh nonce, resent unchanged (same
    nonce, so it runs at most once) at retransmit seconds, doubling, until a
    reply with a valid tag and that nonce arrives or timeout passes; then
    FerryError("timeout") (a wrong key, UDP not enabled, a clock far off).

    transport as for Client: "auto" seals datagrams (AES-256-GCM, see
    ferry-protocol(7), Sealed datagrams; needs cryptography) to any address
    but loopback, where they are HMAC-tagged v1 datagrams; "tls" always
    seals, "plaintext" never does."""

    def __init__(self, host, port=DEFAULT_PORT, keys=None, key_id=None, secret=None,
                 timeout=5.0, retransmit=0.2, transport=None):
        self.host, self.port = host, int(port)
        self.key_id, self._secret = _resolve_key(keys, key_id, secret)
        self.timeout, self.retransmit = timeout, retransmit
        self._mode = _transport_mode(transport)
        self._sealer = None
        self.sealed = None  # set by each request: True when it went sealed

    def _tag(self, label, rest):
        return hmac.new(self._secret.encode(), label + rest, hashlib.sha256).digest()

    def request(self, fields):
        """Sends one request (a dict with type and its fields); returns the
        reply (header, body).  An error reply raises FerryError."""
        info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        self.sealed = _pick_transport(self._mode, info[4][0]) == "tls"
        if self.sealed:
            if self._sealer is None:
                self._sealer = _Sealer(self.key_id, self._secret)
            nonce = os.urandom(12)
            datagram = self._sealer.seal_request(nonce, _encode_head(dict(fields, ts=int(time.time()))))
            opener = self._sealer.open_reply
        else:
            nonce = os.urandom(16).hex()
            header = dict(fields, key_id=self.key_id, nonce=nonce, ts=int(time.time()))
            rest = _encode_head(header)
            datagram = self._tag(REQUEST_LABEL, rest) + rest
            opener = self._open
        if len(datagram) > MAX_DATAGRAM:
            raise FerryError("too-large", "the request does not fit a datagram")
        deadline = time.monotonic() + self.timeout
        wait = self.retransmit
        with socket.socket(info[0], socket.SOCK_DGRAM) as s:
            s.connect(info[4])
            while True:
                s.send(datagram)
                resend = min(time.monotonic() + wait, deadline)
                wait *= 2
                while True:
                    left = resend - time.monotonic()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    try:
                        data = s.recv(MAX_DATAGRAM + 1)
                    except socket.timeout:
                        break
                    except ConnectionRefusedError:
                        continue  # an ICMP error: keep trying until the deadline
                    reply = opener(data, nonce)
                    if reply is not None:
                        h, body = reply
                        if h["type"] == "error":
                            raise FerryError(h.get("code", "unknown"), h.get("message", ""), h)
                        return h, body
                if time.monotonic() >= deadline:
                    raise FerryError("timeout", f"no reply from {self.host}:{self.port}/udp within {self.timeout} s "
                                                "(wrong key, UDP not enabled, or clock skew)")

    def _open(self, data, nonce):
        """The reply's (header, body) if data is a well-formed reply to nonce
        with a valid tag; None for anything else, which is ignored."""
        if len(data) < 32 + 4 + 1:
            return None
        tag, rest = data[:32], data[32:]
        if not hmac.compare_digest(tag, self._tag(REPLY_LABEL, rest)):
            return None
        buf = _Buffer(rest)
        try:
            h, body = _read_frame(buf.read)
        except (EOFError, ValueError, FerryError):
            return None
        if buf.left() or h.get("nonce") != nonce:
            return None  # bytes after the frame, or a reply to another request
        return h, body

    def ping(self):
        """A pong: returns {"rtt": seconds, "ts": the server's Unix time}."""
        t = time.monotonic()
        h, _ = self.request({"type": "ping"})
        return {"rtt": time.monotonic() - t, "ts": h.get("ts")}

    def stat(self, path):
        return self.request({"type": "stat", "path": os.fsdecode(path)})[0]

    def run(self, command, env=None, cwd=None, timeout=None):
        """Runs command (str: sh -c; list: argv) without stdin; a Result whose
        output may be cut to fit one datagram (truncated, *_total say)."""
        h, body = self.request(_exec_request(command, env, cwd, timeout))
        if h["type"] != "result":
            raise FerryError("protocol", f"unexpected {h['type']} reply", h)
        a = h.get("stdout", 0)
        return Result(h.get("code"), h.get("signal"), body[:a], body[a:], bool(h.get("timed_out")),
                      bool(h.get("truncated")), h.get("stdout_total"), h.get("stderr_total"))


def udp_ping(host, port=DEFAULT_PORT, **kw):
    """UdpClient(host, port, **kw).ping()"""
    return UdpClient(host, port, **kw).ping()


def udp_run(host, port=DEFAULT_PORT, command=None, env=None, cwd=None, timeout=None, **kw):
    """UdpClient(host, port, **kw).run(command, env, cwd, timeout)"""
    return UdpClient(host, port, **kw).run(command, env=env, cwd=cwd, timeout=timeout)


def udp_stat(host, port=DEFAULT_PORT, path=".", **kw):
    return UdpClient(host, port, **kw).stat(path)


# ---- transports: TLS and sealed datagrams (ferry-protocol(7), TLS) ------------------
#
# Everything below that needs the cryptography package imports it when it is
# first used, so a plaintext client on loopback stays standard library only.

TRANSPORTS = ("auto", "tls", "plaintext")
DERIVE_SALT = b"ferry-derive-v1|"
TLS_SERVER_LABEL = "ferry-tls-server"
TLS_CLIENT_LABEL = "ferry-tls-client"
UDP_REQUEST_KEY_LABEL = "ferry-udp-request-key"
UDP_REPLY_KEY_LABEL = "ferry-udp-reply-key"
SEALED_REQUEST_MAGIC = b"FSQ1"
SEALED_REPLY_MAGIC = b"FSR1"


def _transport_mode(transport):
    """The transport asked for: the argument, else FERRY_TRANSPORT (read as
    ferry(1) reads it: case and spaces aside, "plain" for plaintext, empty
    for auto), else auto."""
    source = "transport"
    if transport is None:
        transport, source = os.environ.get("FERRY_TRANSPORT", ""), "FERRY_TRANSPORT"
    mode = str(transport).strip().lower() or "auto"
    mode = "plaintext" if mode == "plain" else mode
    if mode not in TRANSPORTS:
        raise ValueError(f"{source}={transport!r}: expected tls, plaintext or auto")
    return mode


def _is_loopback(address):
    """True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z (an address as sockets give it)."""
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _pick_transport(mode, address):
    """"tls" or "plaintext" for a peer address: auto means plaintext only to loopback."""
    if mode == "auto":
        return "plaintext" if _is_loopback(address) else "tls"
    return mode


def derive_key(key_id, secret, label):
    """32 bytes of HKDF-SHA256 (RFC 5869): salt "ferry-derive-v1|" + key id,
    input key material the secret, info the label (UTF-8 bytes, as the
    handshake uses them)."""
    salt = DERIVE_SALT + key_id.encode()
    prk = hmac.new(salt, secret.encode(), hashlib.sha256).digest()
    return hmac.new(prk, label.encode() + b"\x01", hashlib.sha256).digest()


def sni_name(key_id):
    """The DNS name that carries a key id in SNI: lowercase unpadded base32 of
    its UTF-8 bytes in labels of 63 characters, then ".k.ferry"; for a name
    over 253 characters, the base32 of SHA-256 of the id then ".h.ferry"."""
    def b32(data):
        return base64.b32encode(data).decode().rstrip("=").lower()
    text = b32(key_id.encode())
    name = ".".join(text[i:i + 63] for i in range(0, len(text), 63)) + ".k.ferry"
    if len(name) <= 253:
        return name
    return b32(hashlib.sha256(key_id.encode()).digest()) + ".h.ferry"


# The certificate of ferry-protocol(7), before its public key (CN=ferry-server;
# the client's has ferry-client in both names), and what follows the key.
_CERT_HEAD = bytes.fromhex(
    "3081dc30818fa003020102020101300506032b657030173115301306"
    "035504030c0c66657272792d7365727665723020170d373030313031"
    "3030303030305a180f39393939313233313233353935395a30173115"
    "301306035504030c0c66657272792d736572766572302a300506032b"
    "6570032100")
_CERT_SIG_HEAD = bytes.fromhex("300506032b6570034100")


_CRYPTO = None


def _crypto():
    """The parts of cryptography that TLS and sealed datagrams use."""
    global _CRYPTO
    if _CRYPTO is not None:
        return _CRYPTO
    try:
        from cryptography import x509
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise FerryError("tls-unavailable",
                         "TLS and sealed datagrams need the Python package cryptography "
                         "(pip install cryptography; Debian: python3-cryptography); "
                         "to a ferryd on loopback, transport='plaintext' needs none") from None
    ns = dict(x509=x509, InvalidTag=InvalidTag, serialization=serialization,
              Ed25519PrivateKey=Ed25519PrivateKey, Ed25519PublicKey=Ed25519PublicKey, AESGCM=AESGCM)
    _CRYPTO = type("crypto", (), ns)
    return _CRYPTO


def tls_identity(key_id, secret, role):
    """(seed, public key, certificate DER) of a key's "server" or "client"
    Ed25519 identity, the certificate made byte for byte as the protocol
    page says (so it is a test vector too)."""
    c = _crypto()
    seed = derive_key(key_id, secret, TLS_SERVER_LABEL if role == "server" else TLS_CLIENT_LABEL)
    private = c.Ed25519PrivateKey.from_private_bytes(seed)
    raw = c.serialization.Encoding.Raw
    public = private.public_key().public_bytes(raw, c.serialization.PublicFormat.Raw)
    head = _CERT_HEAD if role == "server" else _CERT_HEAD.replace(b"ferry-server", b"ferry-client")
    tbs = head[3:] + public
    cert = head + public + _CERT_SIG_HEAD + private.sign(tbs)
    return seed, public, cert


def _pem(label, der):
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


_TLS_CONTEXTS = {}
_TLS_CONTEXTS_LOCK = threading.Lock()


def _tls_context(key_id, secret):
    """(SSLContext, the server's public key, the SNI name) for a key, made
    once per process: TLS 1.3 only, our client identity loaded, no CA (the
    server is checked by its public key after the handshake)."""
    slot = hashlib.sha256(key_id.encode() + b"\0" + secret.encode()).digest()
    with _TLS_CONTEXTS_LOCK:
        made = _TLS_CONTEXTS.get(slot)
    if made is not None:
        return made
    c = _crypto()
    seed, _, cert = tls_identity(key_id, secret, "client")
    _, server_public, _ = tls_identity(key_id, secret, "server")
    key_pem = c.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        c.serialization.Encoding.PEM, c.serialization.PrivateFormat.PKCS8, c.serialization.NoEncryption())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # no CA: the key is compared after the handshake
    ctx.options |= getattr(ssl, "OP_NO_TICKET", 0)
    # load_cert_chain reads files only: a private directory (0700), a file
    # (0600) that lives for the call.
    tmp = tempfile.mkdtemp(prefix="ferry-tls-")
    path = os.path.join(tmp, "identity.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_pem("CERTIFICATE", cert) + key_pem)
        ctx.load_cert_chain(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(tmp)
    made = (ctx, server_public, sni_name(key_id))
    with _TLS_CONTEXTS_LOCK:
        _TLS_CONTEXTS[slot] = made
    return made


def _tls_failure(err, key_id, where):
    """A FerryError for a failed TLS handshake, in ferry(1)'s words."""
    reason = (getattr(err, "reason", None) or str(err)).upper()
    # Only an older ferryd: a current one shows unknown ids a decoy identity.
    if "ACCESS_DENIED" in reason:
        return FerryError("auth-failed", f"the server does not know key {key_id}")
    if "CERTIFICATE_UNKNOWN" in reason or "BAD_CERTIFICATE" in reason:
        return FerryError("auth-failed", f"the server refused key {key_id}: wrong key?")
    return FerryError("tls", f"TLS with {where} failed: {err}")


def _frame_at(buf):
    """(header, length) of the whole v1 frame at the start of buf, None when
    more bytes are needed; FerryError("protocol") when it is no frame."""
    if len(buf) < 4:
        return None
    (n,) = struct.unpack(">I", bytes(buf[:4]))
    if not 1 <= n <= MAX_HEADER:
        raise FerryError("protocol", f"a frame header of {n} bytes")
    if len(buf) < 4 + n:
        return None
    try:
        header = _decode_head(bytes(buf[4:4 + n]))
    except ValueError:
        header = None
    if header is None:
        raise FerryError("protocol", "a frame header that is not an object with a type")
    size = header.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FerryError("protocol", f"a frame size of {size!r}")
    return (header, 4 + n + size) if len(buf) >= 4 + n + size else None


class _TlsSocket:
    """A connected TCP socket with TLS 1.3 over it, driven through memory
    BIOs (ssl.SSLObject) so that the client decides what the first bytes
    are: ferryd sends a v1 hello at once to peers it takes plaintext from,
    and that one frame is skipped before the TLS bytes.

    It looks like a socket to Client (sendall, sendfile, makefile, settimeout,
    close).  One thread may read while others write: the SSLObject is used
    under a lock that is never held across socket I/O, and TLS bytes go out
    in the order they were made."""

    def __init__(self, sock, key_id, secret, where):
        ctx, server_public, name = _tls_context(key_id, secret)
        self._sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=False, server_hostname=name)
        self._lock = threading.Lock()  # the SSLObject, its BIOs and _queue
        self._send_lock = threading.Lock()  # the socket's sending side
        self._queue = []  # TLS bytes made and not yet sent, in order
        self._buf = bytearray()
        self._eof = False
        try:
            self._handshake()
        except ssl.SSLError as e:
            raise _tls_failure(e, key_id, where) from None
        if self._tls.version() != "TLSv1.3":
            raise FerryError("tls", f"TLS with {where}: {self._tls.version()}, not TLSv1.3")
        der = self._tls.getpeercert(binary_form=True)
        c = _crypto()
        try:
            public = c.x509.load_der_x509_certificate(der).public_key()
        except (ValueError, TypeError):
            public = None
        ok = isinstance(public, c.Ed25519PublicKey) and hmac.compare_digest(
            public.public_bytes(c.serialization.Encoding.Raw, c.serialization.PublicFormat.Raw), server_public)
        if not ok:  # nothing has been sent inside TLS: just go
            raise FerryError("auth-failed", f"the server does not hold key {key_id} as given here (another secret, or no such key): wrong key?")
        self.cipher = self._tls.cipher()[0]

    # -- the handshake, and the v1 hello some servers send first
    def _handshake(self):
        pending = bytearray()  # bytes from the server before TLS starts
        skipped = started = False
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                self._pull()
            self._flush()
            if done:
                return
            try:
                data = self._sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise FerryError("tls", "the server closed the connection during the TLS handshake"
                                        + ("" if started else " (does it offer TLS?)"))
            if not started:
                pending += data
                if not skipped and pending[0] == 0:
                    frame = _frame_at(pending)
                    if frame is None:
                        continue
                    header, n = frame
                    if header["type"] == "error":
                        raise FerryError(header.get("code", "unknown"), header.get("message", ""), header)
                    del pending[:n]
                    skipped = True
                    if not pending:
                        continue
                if pending[0] == 0:  # v1 again: the server took our ClientHello for a frame
                    frame = _frame_at(pending)
                    if frame is None:
                        continue
                    header = frame[0]
                    msg = header.get("message", "") if header["type"] == "error" else f"a {header['type']} frame"
                    raise FerryError("tls", f"the server answered TLS in plaintext ({msg}): it does not offer TLS")
                data, started = bytes(pending), True
            with self._lock:
                self._in.write(data)

    # -- sending
    def _pull(self):
        """Moves what TLS made into the queue (under _lock)."""
        if self._out.pending:
            self._queue.append(self._out.read())

    def _flush(self, block=True):
        """Sends the queue in order.  block=False: unless another thread is
        sending, which then sends what was queued too."""
        if not self._send_lock.acquire(blocking=block):
            return
        try:
            while True:
                with self._lock:
                    data = b"".join(self._queue)
                    self._queue.clear()
                if not data:
                    break
                self._sock.sendall(data)
        finally:
            self._send_lock.release()
        with self._lock:
            left = bool(self._queue)
        if left:  # queued while we let go of the socket
            self._flush(block=False)

    def sendall(self, data):
        view = memoryview(data).cast("B")
        for i in range(0, len(view), CHUNK):
            piece = view[i:i + CHUNK]
            with self._lock:
                while piece:
                    piece = piece[self._tls.write(piece):]
                self._pull()
            self._flush()

    def sendfile(self, f, offset=0, count=None):
        """TLS cannot use sendfile(2): nothing sent, the caller sends by hand."""
        return 0

    # -- receiving
    def _fill(self):
        """More plaintext into _buf; False at the end of the stream."""
        while not self._eof:
            with self._lock:
                try:
                    data = self._tls.read(CHUNK)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""
                self._pull()
                queued = bool(self._queue)
            if queued:  # a reply TLS itself owes (a key update)
                self._flush(block=False)
            if data is not None:
                if not data:
                    self._eof = True
                    break
                self._buf += data
                return True
            raw = self._sock.recv(CHUNK)
            with self._lock:
                if raw:
                    self._in.write(raw)
                else:
                    self._in.write_eof()
        return False

    def read(self, n):
        """n bytes, or fewer at the end of the stream."""
        while len(self._buf) < n and self._fill():
            pass
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    # -- the rest of the socket interface Client uses
    def makefile(self, mode="rb", buffering=None):
        return self

    def settimeout(self, timeout):
        self._sock.settimeout(timeout)

    def setsockopt(self, *args):
        self._sock.setsockopt(*args)

    def fileno(self):
        return self._sock.fileno()

    def close(self):
        """close_notify when it can go at once, then the socket is closed."""
        if self._sock.fileno() >= 0:
            try:
                with self._lock:
                    try:
                        self._tls.unwrap()
                    except (ssl.SSLError, ValueError):
                        pass
                    self._pull()
                self._flush(block=False)
            except OSError:
                pass
        self._sock.close()


class _Sealer:
    """The two AES-256-GCM keys of a key, and the sealed datagram format:
    MAGIC(4) NONCE(12) TAG(16) KIDLEN(1) KEY_ID CIPHERTEXT, the AAD being
    MAGIC + KIDLEN + KEY_ID (+ the request's NONCE for a reply)."""

    def __init__(self, key_id, secret):
        self._c = _crypto()
        self.kid = key_id.encode()
        if not 1 <= len(self.kid) <= 255:
            raise FerryError("bad-keys", f"key {key_id!r}: an id over 255 bytes cannot seal datagrams")
        self._request = self._c.AESGCM(derive_key(key_id, secret, UDP_REQUEST_KEY_LABEL))
        self._reply = self._c.AESGCM(derive_key(key_id, secret, UDP_REPLY_KEY_LABEL))

    def _head(self, magic):
        return magic + bytes([len(self.kid)]) + self.kid

    def _seal(self, aead, magic, nonce, plaintext, aad):
        sealed = aead.encrypt(nonce, bytes(plaintext), aad)
        return magic + nonce + sealed[-16:] + bytes([len(self.kid)]) + self.kid + sealed[:-16]

    def seal_request(self, nonce, plaintext):
        """A request: plaintext is L, the header (no key_id, no nonce), the body."""
        return self._seal(self._request, SEALED_REQUEST_MAGIC, nonce, plaintext, self._head(SEALED_REQUEST_MAGIC))

    def seal_reply(self, request_nonce, nonce, plaintext):
        """A reply (what a server sends; here for tests)."""
        return self._seal(self._reply, SEALED_REPLY_MAGIC, nonce, plaintext,
                          self._head(SEALED_REPLY_MAGIC) + request_nonce)

    def _open(self, aead, magic, data, extra):
        head = self._head(magic)
        if len(data) < 33 + len(self.kid) or data[:4] != magic or data[32:33 + len(self.kid)] != head[4:]:
            return None
        try:
            return aead.decrypt(data[4:16], data[33 + len(self.kid):] + data[16:32], head + extra)
        except self._c.InvalidTag:
            return None

    def open_request(self, data):
        """(nonce, plaintext) of a request for this key, None otherwise."""
        opened = self._open(self._request, SEALED_REQUEST_MAGIC, data, b"")
        return None if opened is None else (data[4:16], opened)

    def open_reply(self, data, request_nonce):
        """The reply's (header, body) if data is the sealed reply to the
        request with request_nonce; None for anything else (ignored)."""
        opened = self._open(self._reply, SEALED_REPLY_MAGIC, data, request_nonce)
        if opened is None:
            return None
        buf = _Buffer(opened)
        try:
            h, body = _read_frame(buf.read)
        except (EOFError, ValueError, FerryError):
            return None
        return None if buf.left() else (h, body)
