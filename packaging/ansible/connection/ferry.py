# Ansible connection plugin for ferryd (ferry-protocol(7)), built on the
# ferry_client library. Part of ferry; MIT OR Apache-2.0.
from __future__ import annotations

DOCUMENTATION = r"""
name: ferry
short_description: run tasks through ferryd, the ferry remote command daemon
description:
  - Runs Ansible's commands and moves its files over ferry's framed, mutually
    authenticated (HMAC-SHA256) protocol instead of SSH. Each task opens one
    connection, authenticates, and runs its commands through the server's
    shell (C(sh -c)), as the user ferryd runs as.
  - To any address but loopback the connection runs inside TLS 1.3 keyed by
    the same shared key (no certificates to manage); to loopback it runs in
    clear. O(transport) overrides the choice.
  - Files (the modules Ansible uploads, C(copy), C(fetch), C(template)) go
    through commands as well, so that any absolute path the daemon's user may
    write works whatever directory ferryd serves - C(put_file) runs
    C(sh -c 'cat > "$1" && wc -c < "$1"') with the file as standard input and
    checks the size written, C(fetch_file) runs C(sh -c 'exec cat -- "$1"').
    When O(root) is set, paths under it use ferry's own file requests instead
    (checked with SHA-256, replaced atomically).
  - Needs the ferry_client Python library; it is looked up on the Python
    path, beside this file, in C(../../python/) from here (the source tree)
    and in C(/usr/lib/python3/dist-packages/). Over TLS it uses the Python
    package cryptography, which ansible-core already depends on.
author: ferry maintainers
version_added: "2.14"
notes:
  - Over TLS every byte is encrypted and authenticated, with forward
    secrecy. In plaintext (loopback, or O(transport=plaintext)) only the
    handshake is authenticated; the frames after it travel in clear.
  - O(remote_user) is ignored - commands run as ferryd's user.
  - Privilege escalation with a password (C(--ask-become-pass) or
    C(ansible_become_password), sudo or su) runs the command on a terminal
    ferryd opens (ferry-protocol(7), Terminals), as the ssh plugin uses
    C(-tt), and types the password at the prompt; a pipelined module goes
    without a terminal, after the password on standard input (sudo -S).
    The server must allow terminals (C(allow_pty), the default). ferryd's
    packaged systemd sandbox forbids privilege escalation (see ferryd(8),
    SECURITY CONSIDERATIONS).
  - With an exec allow-list on the server, the shell (C(sh)) must be allowed,
    since every command Ansible sends is a shell command.
extends_documentation_fragment:
  - connection_pipelining
options:
  host:
    description: Host name or address of ferryd.
    type: string
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_ferry_host
      - name: delegated_vars['ansible_host']
  port:
    description: TCP port of ferryd.
    type: int
    default: 7075
    ini:
      - section: ferry_connection
        key: port
    env:
      - name: ANSIBLE_FERRY_PORT
    vars:
      - name: ansible_port
      - name: ansible_ferry_port
  keys:
    description:
      - The keys file (ferry-keys(5), mode 0600) holding the key shared with ferryd.
      - When unset, as ferry(1) finds it - E(FERRY_KEYS), else the first of
        C(~/.config/ferry/keys) and C(/etc/ferry/keys) that exists.
    type: path
    ini:
      - section: ferry_connection
        key: keys
    env:
      - name: ANSIBLE_FERRY_KEYS
    vars:
      - name: ansible_ferry_keys
  key_id:
    description: Which key of the keys file to use; the first when unset.
    type: string
    ini:
      - section: ferry_connection
        key: key_id
    env:
      - name: ANSIBLE_FERRY_KEY_ID
    vars:
      - name: ansible_ferry_key_id
  secret:
    description:
      - The key's secret itself (for example from a vault), instead of a keys
        file; needs O(key_id).
    type: string
    env:
      - name: ANSIBLE_FERRY_SECRET
    vars:
      - name: ansible_ferry_secret
  timeout:
    description: Seconds to connect and authenticate before the host is unreachable.
    type: int
    default: 10
    ini:
      - section: defaults
        key: timeout
      - section: ferry_connection
        key: timeout
    env:
      - name: ANSIBLE_TIMEOUT
      - name: ANSIBLE_FERRY_TIMEOUT
    vars:
      - name: ansible_ferry_timeout
    cli:
      - name: timeout
  command_timeout:
    description:
      - Seconds after which ferryd stops a command (TERM, then KILL 2 s later);
        0, the default, sets none (the server's own ceiling still applies).
    type: float
    default: 0
    ini:
      - section: ferry_connection
        key: command_timeout
    env:
      - name: ANSIBLE_FERRY_COMMAND_TIMEOUT
    vars:
      - name: ansible_ferry_command_timeout
  transport:
    description:
      - C(auto) - TLS to any address but loopback, plaintext to loopback;
        C(tls) or C(plaintext) forces one (as ferry(1)'s C(--tls) and
        C(--plaintext)).
      - When unset, E(FERRY_TRANSPORT) decides as it does for ferry(1), else C(auto).
    type: string
    choices: [auto, tls, plaintext]
    ini:
      - section: ferry_connection
        key: transport
    env:
      - name: ANSIBLE_FERRY_TRANSPORT
    vars:
      - name: ansible_ferry_transport
  root:
    description:
      - The absolute path of the directory the server serves (its C(--root)),
        as the server sees it. Files under it are moved with ferry's get and
        put requests (SHA-256 checked, atomic) instead of C(cat); others still
        go through commands. Unset, every file goes through commands.
    type: string
    vars:
      - name: ansible_ferry_root
"""

EXAMPLES = r"""
# inventory.ini
# [web]
# web1 ansible_host=192.0.2.10
# web2 ansible_host=192.0.2.11 ansible_port=7076
# [web:vars]
# ansible_connection=ferry
# ansible_ferry_keys=~/.config/ferry/keys
# ansible_ferry_key_id=laptop
# ansible_pipelining=true
# ; ansible_ferry_transport=tls   (default auto: TLS off loopback)
"""

import importlib.util
import os
import sys
import threading

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()


def _load_ferry_client():
    try:
        import ferry_client  # noqa: F401  (installed on the Python path)
        return ferry_client
    except ImportError:
        pass
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (os.path.join(here, "ferry_client.py"),
                      os.path.join(here, "..", "..", "python", "ferry_client.py"),
                      "/usr/lib/python3/dist-packages/ferry_client.py"):
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("ferry_client", candidate)
            module = importlib.util.module_from_spec(spec)
            sys.modules["ferry_client"] = module
            spec.loader.exec_module(module)
            return module
    return None


ferry_client = _load_ferry_client()

PUT_SCRIPT = 'cat > "$1" && wc -c < "$1"'
FETCH_SCRIPT = 'exec cat -- "$1"'


class Connection(ConnectionBase):
    """Runs commands and moves files through ferryd."""

    transport = "ferry"
    has_pipelining = True
    # Commands can run on a terminal ferryd opens (ferry run -t), as ssh -tt.
    has_tty = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._client = None

    # ---- connection ------------------------------------------------------------
    def _connect(self):
        if self._connected:
            return self
        if ferry_client is None:
            raise AnsibleError("the ferry connection plugin needs the ferry_client Python library "
                               "(packaging/python/ferry_client.py); put it beside this plugin or on the Python path")
        host = self.get_option("host")
        port = self.get_option("port")
        keys = self.get_option("keys")
        key_id = self.get_option("key_id")
        secret = self.get_option("secret")
        display.vvv(f"FERRY: connect to {host}:{port} (key {key_id or 'first'} of {keys or 'the default keys file'})",
                    host=host)
        try:
            self._client = ferry_client.Client(host, port, keys=keys, key_id=key_id, secret=secret,
                                               connect_timeout=self.get_option("timeout"),
                                               transport=self.get_option("transport"))
        except ferry_client.FerryError as e:
            raise AnsibleConnectionFailure(f"ferry: {host}:{port}: {e}") from None
        except ValueError as e:  # a transport that is none of auto, tls, plaintext
            raise AnsibleConnectionFailure(f"ferry: {e}") from None
        except OSError as e:
            raise AnsibleConnectionFailure(f"ferry: cannot connect to {host}:{port}: {e}") from None
        transport = getattr(self._client, "transport", "plaintext")
        cipher = getattr(self._client, "cipher", None)
        display.vvv(f"FERRY: connected over {transport}{f' ({cipher})' if cipher else ''}", host=host)
        self._connected = True
        return self

    def close(self):
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None
        self._connected = False

    def reset(self):
        self.close()

    # ---- commands ----------------------------------------------------------------
    def _run(self, command, **kw):
        """client.run(command, **kw) under the command timeout, its failures
        as Ansible's: one that ends the connection (a fatal FerryError, a lost
        socket) closes it and is a connection failure, any other an error."""
        timeout = self.get_option("command_timeout") or None
        try:
            return self._client.run(command, timeout=timeout, **kw)
        except ferry_client.FerryError as e:
            if e.fatal:
                self.close()
                raise AnsibleConnectionFailure(f"ferry: {e}") from None
            raise AnsibleError(f"ferry: cannot run the command: {e}") from None
        except (OSError, EOFError) as e:
            self.close()
            raise AnsibleConnectionFailure(f"ferry: connection lost: {e}") from None

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Runs cmd through the server's shell; in_data (a pipelined module)
        goes to its standard input."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv(f"FERRY: EXEC {to_text(cmd)}", host=self.get_option("host"))
        if sudoable and self.become and (self.become.expect_prompt() or getattr(self.become, "require_tty", False)):
            return self._exec_with_prompt(to_text(cmd, errors="surrogate_or_strict"), in_data)
        r = self._run(to_text(cmd, errors="surrogate_or_strict"), stdin=to_bytes(in_data) if in_data is not None else None)
        stdout = r.stdout
        if sudoable and self.become and self.become.success:
            marker = to_bytes(self.become.success)
            lines = stdout.split(b"\n", 1)
            if lines[0].strip() == marker:
                stdout = lines[1] if len(lines) > 1 else b""
        return r.status, stdout, r.stderr

    def _exec_with_prompt(self, cmd, in_data):
        """Privilege escalation that prompts for a password (sudo or su with a
        become password), as Ansible's ssh plugin does it with -tt: without a
        module on stdin the command runs on a terminal ferryd opens (su and
        sudo read the password from the terminal); a pipelined module goes
        without one, the password and then the module on stdin (sudo -S reads
        it there; su never pipelines). The output is watched for the prompt,
        the password is sent once, and what comes before the become success
        line (the prompt, the echoed newline) is dropped."""
        become = self.become
        password = become.get_option("become_pass", playcontext=self._play_context) or ""
        b_password = to_bytes(password, errors="surrogate_or_strict") + b"\n"
        tty = in_data is None
        state = {"seen": b"", "sent": False, "ok": False, "error": None}
        out, err = [], []
        client = self._client

        def answer():
            try:
                client.send_input(b_password)
                if in_data is not None:
                    client.send_input(to_bytes(in_data))
                    client.end_input()
            except (OSError, ferry_client.FerryError):
                pass  # the command's end (or the connection's) says what happened

        def watch(chunk, into):
            if state["ok"] or state["error"]:
                into.append(chunk)
                return
            state["seen"] += chunk
            seen = state["seen"]
            if become.check_success(seen):
                state["ok"] = True
                # Keep what follows the success line.
                lines = seen.splitlines(True)
                at = next(i for i, l in enumerate(lines) if become.check_success(l))
                into.append(b"".join(lines[at + 1:]))
                if not state["sent"] and in_data is not None:
                    # No prompt came (sudo remembered us): the module alone.
                    state["sent"] = True
                    threading.Thread(target=self._send_module, args=(in_data,), daemon=True).start()
            elif not state["sent"] and become.check_password_prompt(seen):
                state["sent"] = True
                display.vvv("FERRY: become password prompt seen, sending the password", host=self.get_option("host"))
                threading.Thread(target=answer, daemon=True).start()
            elif state["sent"] and become.check_incorrect_password(seen):
                state["error"] = f"Incorrect {become.name} password"
            elif become.check_missing_password(seen):
                state["error"] = f"Missing {become.name} password"

        r = self._run(cmd, stdin=True, pty=({"term": "dumb"} if tty else None),
                      on_stdout=lambda c: watch(c, out), on_stderr=lambda c: watch(c, err))
        if state["error"]:
            raise AnsibleError(f"ferry: {state['error']}")
        if not state["ok"]:
            # The become command failed before running anything: its words as they came.
            return r.status, state["seen"], b"".join(err)
        return r.status, b"".join(out), b"".join(err)

    def _send_module(self, in_data):
        try:
            self._client.send_input(to_bytes(in_data))
            self._client.end_input()
        except (OSError, ferry_client.FerryError):
            pass

    # ---- files ---------------------------------------------------------------------
    def _under_root(self, path):
        root = self.get_option("root")
        if not root:
            return None
        root = os.path.normpath(root)
        path = os.path.normpath(path)
        if path != root and path.startswith(root.rstrip("/") + "/"):
            return os.path.relpath(path, root)
        return None

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        host = self.get_option("host")
        display.vvv(f"FERRY: PUT {in_path} TO {out_path}", host=host)
        if not os.path.isfile(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f"file or module does not exist: {to_native(in_path)}")
        rel = self._under_root(out_path)
        if rel is not None:
            try:
                ok = self._client.put(in_path, rel)
                display.vvv(f"FERRY: PUT checked with {ok.get('digest', 'sha256')}", host=host)
                return
            except ferry_client.FerryError as e:
                if e.code != "bad-path":  # a link that leaves the root: fall back to cat
                    raise AnsibleError(f"ferry: failed to put {in_path} to {out_path}: {e}") from None
        size = os.path.getsize(in_path)
        with open(in_path, "rb") as f:
            r = self._run(["sh", "-c", PUT_SCRIPT, "sh", out_path], stdin=f)
        if r.code != 0:
            raise AnsibleError(f"ferry: failed to transfer {in_path} to {out_path}: "
                               f"{to_native(r.stderr.strip()) or f'status {r.status}'}")
        written = r.stdout.strip()
        if written != str(size).encode():
            raise AnsibleError(f"ferry: {out_path} has {to_native(written)} bytes after the transfer, not {size}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f"FERRY: FETCH {in_path} TO {out_path}", host=self.get_option("host"))
        rel = self._under_root(in_path)
        if rel is not None:
            try:
                got = self._client.get(rel, out_path)
                display.vvv(f"FERRY: FETCH checked with {got.get('digest', 'sha256')}", host=self.get_option("host"))
                return
            except ferry_client.FerryError as e:
                if e.code == "not-found":
                    raise AnsibleFileNotFound(f"ferry: {in_path} does not exist on the remote") from None
                if e.code != "bad-path":
                    raise AnsibleError(f"ferry: failed to fetch {in_path}: {e}") from None
        part = out_path + ".part"
        try:
            with open(part, "wb") as f:
                r = self._run(["sh", "-c", FETCH_SCRIPT, "sh", in_path], on_stdout=f.write)
            if r.code != 0:
                err = to_native(r.stderr.strip()) or f"status {r.status}"
                if b"No such file" in r.stderr:
                    raise AnsibleFileNotFound(f"ferry: {in_path}: {err}")
                raise AnsibleError(f"ferry: failed to fetch {in_path}: {err}")
            os.replace(part, out_path)
        finally:
            if os.path.exists(part):
                os.unlink(part)
