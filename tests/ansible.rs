//! Ansible, for real, over ferry: ansible-core from the Python package
//! registry in a virtual environment (made once, kept under cargo's target
//! tmp directory), three ferryd instances as three hosts on 127.0.0.1,
//! 127.0.0.2 and 127.0.0.3, the connection plugin
//! packaging/ansible/connection/ferry.py, and tests/ansible/playbook.yml with
//! ping, command, a failing shell task under ignore_errors, copy (content and
//! a file), template, file, stat and fetch; with and without pipelining;
//! h2 over TLS (`ansible_ferry_transport=tls`), the others in clear.
//! The results come from a JSON stdout callback (tests/ansible/callback_plugins;
//! ansible-core ships no json callback) and from the files on disk.
//!
//! Needs python3 with the venv module (Debian: python3-venv) and access to
//! the registry the first time; without them the test fails and says so.
//! FERRY_ANSIBLE_VENV names another venv directory to use or make.
mod common;

use common::{python_venv, run_bounded, sha256_hex, Daemon};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The ansible-core release the suite runs (Python 3.11 or later on the controller).
const ANSIBLE_CORE: &str = "ansible-core==2.19.14";

/// The venv with ANSIBLE_CORE, made (once) when missing.
fn venv() -> PathBuf {
    python_venv("ansible", ANSIBLE_CORE, "FERRY_ANSIBLE_VENV")
}

fn python_for_modules() -> String {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "python3".to_string()
}

struct Host {
    name: &'static str,
    daemon: Daemon,
    work: PathBuf,
    tmp: PathBuf,
    /// Set for the host whose work directory lies inside its served root.
    root: Option<PathBuf>,
}

/// The JSON the `json_results` callback prints after Ansible's own lines.
fn json_report(stdout: &str) -> Value {
    let json_start = stdout.find("{\n").unwrap_or_else(|| panic!("no JSON in the output:\n{stdout}"));
    serde_json::from_str(&stdout[json_start..]).unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}

/// The result of the first play's task `name` on `host`.
fn task_result(report: &Value, name: &str, host: &str) -> Value {
    let tasks = report["plays"][0]["tasks"].as_array().unwrap();
    let t = tasks.iter().find(|t| t["task"]["name"] == name).unwrap_or_else(|| panic!("no task {name}"));
    t["hosts"][host].clone()
}

/// `ansible-playbook` from `venv` on `d`'s inventory.ini and `play`, run in
/// `d` with ferry's connection plugin and the JSON results callback from
/// `src`, and nothing from the caller's Ansible or ferry settings.
fn ansible_playbook(venv: &Path, src: &Path, d: &Path, play: &Path) -> Command {
    let mut cmd = Command::new(venv.join("bin/ansible-playbook"));
    cmd.arg("-i")
        .arg(d.join("inventory.ini"))
        .arg(play)
        .current_dir(d)
        .env("ANSIBLE_CONNECTION_PLUGINS", src.join("packaging/ansible/connection"))
        .env("ANSIBLE_CALLBACK_PLUGINS", src.join("tests/ansible/callback_plugins"))
        .env("ANSIBLE_STDOUT_CALLBACK", "json_results")
        .env("ANSIBLE_HOME", d.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", d.join("local-tmp"))
        .env("ANSIBLE_CONFIG", d.join("none.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("FERRY_KEYS")
        .env_remove("ANSIBLE_PIPELINING");
    cmd
}

fn playbook(pipelining: bool) {
    let venv = venv();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = d.join("files");
    let fetched = d.join("fetched");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&fetched).unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(files.join("payload.bin"), &payload).unwrap();
    std::fs::copy(src.join("tests/ansible/greeting.j2"), files.join("greeting.j2")).unwrap();

    // h1 and h2: work and temp directories outside the served root (files go
    // through sh and cat); h3: inside it, with ansible_ferry_root (ferry's own
    // get and put).
    let mut hosts = Vec::new();
    for (name, ip) in [("h1", "127.0.0.1"), ("h2", "127.0.0.2"), ("h3", "127.0.0.3")] {
        // As a packaged ferryd: no PYTHONUNBUFFERED from the caller's shell,
        // which makes pipelined modules read their code a byte per read(2).
        let (daemon, _) = Daemon::start_config("", &["--listen", &format!("{ip}:0")], |c| {
            c.env_remove("PYTHONUNBUFFERED");
        });
        assert_eq!(daemon.addr.ip().to_string(), ip);
        let inside = name == "h3";
        let base = if inside { daemon.root.path().to_path_buf() } else { d.join(name) };
        let (work, tmp) = (base.join("work"), base.join("remote-tmp"));
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("old.txt"), "to be removed\n").unwrap();
        let root = inside.then(|| daemon.root.path().to_path_buf());
        hosts.push(Host { name, daemon, work, tmp, root });
    }

    // h2 goes over TLS although it is on loopback (the transport override);
    // h1 and h3 in clear, as auto chooses there.
    let mut inv = String::from("[fleet]\n");
    for h in &hosts {
        inv += &format!(
            "{} ansible_host={} ansible_port={} ansible_ferry_keys={} ansible_ferry_key_id=test work={} ansible_remote_tmp={}{}{}\n",
            h.name,
            h.daemon.addr.ip(),
            h.daemon.addr.port(),
            h.daemon.keys_path.display(),
            h.work.display(),
            h.tmp.display(),
            h.root.as_ref().map(|r| format!(" ansible_ferry_root={}", r.display())).unwrap_or_default(),
            if h.name == "h2" { " ansible_ferry_transport=tls" } else { "" }
        );
    }
    inv += &format!(
        "\n[fleet:vars]\nansible_connection=ferry\nansible_pipelining={pipelining}\nansible_python_interpreter={}\nfiles={}\nfetched={}\n",
        python_for_modules(),
        files.display(),
        fetched.display()
    );
    std::fs::write(d.join("inventory.ini"), &inv).unwrap();

    let mut cmd = ansible_playbook(&venv, src, d, &src.join("tests/ansible/playbook.yml"));
    cmd.env("ANSIBLE_FORKS", "3");
    let t = Instant::now();
    let out = run_bounded(cmd, Duration::from_secs(300), "ansible-playbook");
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("ansible-playbook, pipelining {pipelining}: {:.1} s, {}\n{stderr}", took.as_secs_f64(), out.status);
    // Status 0: the failing task is ignored, so the play succeeds.
    assert!(out.status.success(), "ansible-playbook failed ({}):\n{stdout}\n{stderr}", out.status);
    let report = json_report(&stdout);

    let task = |name: &str, host: &str| task_result(&report, name, host);
    for h in &hosts {
        let n = h.name;
        let stats = &report["stats"][n];
        assert_eq!(stats["unreachable"], 0, "{n}: {stats}");
        assert_eq!(stats["failures"], 0, "{n}: {stats}");
        assert_eq!(stats["ignored"], 1, "{n}: {stats}");
        assert_eq!(stats["ok"], 15, "{n}: {stats}");

        assert_eq!(task("ping", n)["ping"], "pong", "{n}");
        let r = task("command", n);
        assert_eq!((r["rc"].clone(), r["stdout"].clone()), (Value::from(0), Value::from(format!("hello {n}"))), "{n}: {r}");
        let r = task("shell that fails", n);
        assert_eq!(r["failed"], true, "{n}: {r}");
        assert_eq!(r["_ignore_errors"], true, "{n}: {r}");
        assert_eq!(r["rc"], 3, "{n}: {r}");
        assert_eq!(r["stderr"], "to-stderr", "{n}: {r}");
        let r = task("shell after the failure", n);
        assert_eq!(r["stdout"], format!("continued on {n}"), "{n}: {r}");
        assert_eq!(std::fs::read_to_string(h.work.join("continued.txt")).unwrap(), format!("continued on {n}\n"));

        assert_eq!(task("copy content", n)["changed"], true, "{n}");
        let content = h.work.join("content.txt");
        assert_eq!(std::fs::read_to_string(&content).unwrap(), format!("content of {n}\n"));
        assert_eq!(std::fs::metadata(&content).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(task("copy a file", n)["changed"], true, "{n}");
        assert_eq!(task("copy the same file again", n)["changed"], false, "{n}");
        assert_eq!(std::fs::read(h.work.join("payload.bin")).unwrap(), payload, "{n}: payload.bin");

        assert_eq!(task("template", n)["changed"], true, "{n}");
        assert_eq!(
            std::fs::read_to_string(h.work.join("greeting.txt")).unwrap(),
            format!("hello from {n} on port {}\nline 1\nline 2\nline 3\n", h.daemon.addr.port())
        );

        let made = h.work.join("made/sub");
        assert!(made.is_dir(), "{n}");
        assert_eq!(std::fs::metadata(&made).unwrap().permissions().mode() & 0o777, 0o750);
        assert!(made.join("touched").is_file(), "{n}");
        assert_eq!(task("file absent", n)["changed"], true, "{n}");
        assert!(!h.work.join("old.txt").exists(), "{n}");

        let r = task("stat", n);
        assert_eq!(r["stat"]["exists"], true, "{n}: {r}");
        assert_eq!(r["stat"]["size"], payload.len(), "{n}: {r}");
        assert_eq!(r["stat"]["checksum"], sha256_hex(&payload), "{n}: {r}");
        assert_eq!(task("stat of a missing file", n)["stat"]["exists"], false, "{n}");

        let r = task("fetch", n);
        assert_eq!(r["changed"], true, "{n}: {r}");
        let rel = h.work.join("greeting.txt");
        let got = fetched.join(n).join(rel.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read_to_string(&got).unwrap(), std::fs::read_to_string(&rel).unwrap(), "{n}");
        assert_eq!(std::fs::read(fetched.join(format!("{n}-payload.bin"))).unwrap(), payload, "{n}");

        // Pipelining sends modules through stdin: no AnsiballZ file is ever
        // written or run by name; without it every module is uploaded.
        let uploads = h.daemon.log.count("AnsiballZ_");
        if pipelining {
            assert_eq!(uploads, 0, "{n}: modules were uploaded despite pipelining:\n{}", h.daemon.log.text());
        } else {
            assert!(uploads >= 10, "{n}: {uploads} access lines name AnsiballZ files:\n{}", h.daemon.log.text());
        }
        // h3 moved its files with ferry's put and get requests.
        let puts = h.daemon.log.count(" put path=");
        if h.root.is_some() {
            assert!(puts >= 2, "{n}: {puts} puts:\n{}", h.daemon.log.text());
            assert!(h.daemon.log.count(" get path=") >= 2, "{n}:\n{}", h.daemon.log.text());
        } else {
            assert_eq!(puts, 0, "{n}");
        }
        // h2's connections were TLS, the others' in clear.
        let tls = h.daemon.log.count("over TLS");
        if n == "h2" {
            assert!(tls >= 10, "{n}: {tls} connections over TLS:\n{}", h.daemon.log.text());
        } else {
            assert_eq!(tls, 0, "{n}");
        }
        // Ansible removed its remote temporary directories.
        let left: Vec<_> = std::fs::read_dir(&h.tmp).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{n}: left in the remote tmp: {left:?}");
    }
}

#[test]
fn ansible_playbook_over_ferry_with_pipelining() {
    playbook(true);
}

#[test]
fn ansible_playbook_over_ferry_without_pipelining() {
    playbook(false);
}

/// A become method that really prompts: ferryd runs as `nobody` (its
/// `user`), in a mount namespace of its own where /etc/shadow is a copy
/// giving root a known password, and Ansible becomes root with `su` and
/// `ansible_become_password` (what `--ask-become-pass` sets). su reads the
/// password from its terminal: the plugin runs it on a terminal ferryd opens
/// and types the password at the prompt. A wrong password fails the task
/// with "Incorrect su password"; nothing else on the machine sees the
/// shadow copy.
#[test]
fn ansible_become_su_with_a_password_prompt() {
    use std::ffi::OsStr;
    let venv = venv();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // nobody walks through here to its work and temp directories.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let password = format!("pw-{}", std::process::id());
    let hash = Command::new("openssl").args(["passwd", "-6", "-salt", "ferrytestsalt", &password]).output().unwrap();
    assert!(hash.status.success(), "openssl passwd: {}", String::from_utf8_lossy(&hash.stderr));
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
    let shadow: String = std::fs::read_to_string("/etc/shadow")
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix("root:") {
            Some(rest) => format!("root:{hash}:{}\n", rest.split_once(':').map_or("", |(_, r)| r)),
            None => format!("{l}\n"),
        })
        .collect();
    let shadow_copy = d.join("shadow");
    std::fs::write(&shadow_copy, shadow).unwrap();
    std::fs::set_permissions(&shadow_copy, std::fs::Permissions::from_mode(0o640)).unwrap();
    let group = if Command::new("getent").args(["group", "nogroup"]).output().unwrap().status.success() { "nogroup" } else { "nobody" };
    let script = r#"mount --bind "$1" /etc/shadow && shift && exec "$@""#;
    let wrapper: Vec<&OsStr> = ["unshare", "-m", "sh", "-c", script, "sh"].into_iter().map(OsStr::new).chain([shadow_copy.as_os_str()]).collect();
    let (daemon, _) = Daemon::start_config_via(&format!("user = \"nobody\"\ngroup = \"{group}\"\n"), &wrapper);
    assert!(daemon.log.text().contains("running as nobody"), "{}", daemon.log.text());
    std::fs::set_permissions(daemon.root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (work, tmp) = (d.join("work"), d.join("remote-tmp"));
    for p in [&work, &tmp] {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    let mut inv = String::from("[su]\n");
    for (name, pw) in [("good", password.as_str()), ("wrong", "not-the-password")] {
        inv += &format!("{name} ansible_become_password={pw}\n");
    }
    inv += &format!(
        "\n[su:vars]\nansible_connection=ferry\nansible_host={}\nansible_port={}\nansible_ferry_keys={}\nansible_ferry_key_id=test\n\
         ansible_remote_tmp={}\nansible_python_interpreter={}\nansible_become_method=su\nwork={}\n",
        daemon.addr.ip(),
        daemon.addr.port(),
        daemon.keys_path.display(),
        tmp.display(),
        python_for_modules(),
        work.display()
    );
    std::fs::write(d.join("inventory.ini"), &inv).unwrap();
    let play = r#"- hosts: all
  gather_facts: false
  tasks:
    - name: as ferryd's user
      ansible.builtin.command: id -u
    - name: become root with su
      ansible.builtin.command: id -u
      become: true
    - name: a file written as root
      ansible.builtin.copy:
        content: "made by root\n"
        dest: "{{ work }}/{{ inventory_hostname }}.txt"
      become: true
"#;
    std::fs::write(d.join("play.yml"), play).unwrap();
    let cmd = ansible_playbook(&venv, src, d, &d.join("play.yml"));
    let out = run_bounded(cmd, Duration::from_secs(300), "ansible-playbook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The wrong password fails its host: status 2.
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}\n{}", daemon.log.text());
    let report = json_report(&stdout);
    let task = |name: &str, host: &str| task_result(&report, name, host);
    for host in ["good", "wrong"] {
        assert_eq!(task("as ferryd's user", host)["stdout"], "65534", "{host}: {stdout}");
    }
    let r = task("become root with su", "good");
    assert_eq!(r["stdout"], "0", "{r}");
    assert_eq!(r["rc"], 0, "{r}");
    let made = work.join("good.txt");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "made by root\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), 0, "written as root");
    let r = task("become root with su", "wrong");
    assert_eq!(r["failed"], true, "{r}");
    assert!(r.to_string().contains("Incorrect su password"), "{r}");
    assert!(!work.join("wrong.txt").exists());
    assert_eq!(report["stats"]["good"]["failures"], 0, "{}", report["stats"]);
    // su ran on terminals ferryd opened: the access lines say so.
    assert!(daemon.log.count(" pty ") >= 2, "{}", daemon.log.text());
}
