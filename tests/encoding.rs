//! `--encoding` and `$FERRY_ENCODING` with the real binaries: the remote
//! output is decoded to UTF-8 by `ferry run` and the session, a character
//! split across output frames comes out whole, an unknown label is a usage
//! error, and `ferry get` stays byte-exact.

mod common;

use common::{run_with_input, Daemon};

const SENTENCE: &str = "你好，世界！这是一个测试。";
/// SENTENCE in GBK as printf octal escapes (from iconv).
const SENTENCE_GBK_PRINTF: &str =
    r"\304\343\272\303\243\254\312\300\275\347\243\241\325\342\312\307\322\273\270\366\262\342\312\324\241\243";
const SENTENCE_GBK: &[u8] = b"\xc4\xe3\xba\xc3\xa3\xac\xca\xc0\xbd\xe7\xa3\xa1\xd5\xe2\xca\xc7\xd2\xbb\xb8\xf6\xb2\xe2\xca\xd4\xa1\xa3";

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("not UTF-8 ({e}): {bytes:?}"))
}

#[test]
fn run_decodes_gbk_stdout_and_stderr() {
    let d = Daemon::start();
    let cmd = format!("printf '{SENTENCE_GBK_PRINTF}\\n'; printf '{SENTENCE_GBK_PRINTF}' >&2; exit 3");
    let out = d.ferry().args(["run", "-n", "--encoding", "gbk", &d.target(), "--", &cmd]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("{SENTENCE}\n"));
    assert_eq!(text(&out.stderr), SENTENCE);
    assert_eq!(out.status.code(), Some(3), "the remote status still comes through");

    // Without --encoding the same bytes arrive as they were sent.
    let out = d.ferry().args(["run", "-n", &d.target(), "--", &cmd]).output().unwrap();
    assert_eq!(out.stdout, [SENTENCE_GBK, b"\n"].concat());
    assert_eq!(out.stderr, SENTENCE_GBK);
}

#[test]
fn ferry_encoding_variable_and_the_flag_over_it() {
    let d = Daemon::start();
    let cmd = format!("printf '{SENTENCE_GBK_PRINTF}'");
    let out = d.ferry().env("FERRY_ENCODING", "gbk").args(["run", "-n", &d.target(), "--", &cmd]).output().unwrap();
    assert_eq!(text(&out.stdout), SENTENCE);
    assert!(out.status.success(), "{out:?}");

    // The flag wins: the same bytes read as windows-1252 are other characters.
    let out = d.ferry()
        .env("FERRY_ENCODING", "gbk")
        .args(["run", "-n", "--encoding", "windows-1252", &d.target(), "--", r"printf '\351'"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "é");

    // An empty variable is as good as none.
    let out = d.ferry().env("FERRY_ENCODING", "").args(["run", "-n", &d.target(), "--", &cmd]).output().unwrap();
    assert_eq!(out.stdout, SENTENCE_GBK);
}

#[test]
fn a_character_split_across_frames_comes_out_whole() {
    let d = Daemon::start();
    // The pause makes the server send the two halves of 你 in two stdout frames.
    let cmd = r"printf 'a\304'; sleep 0.3; printf '\343b\n'";
    let out = d.ferry().args(["run", "-n", "-v", "--encoding", "gbk", &d.target(), "--", cmd]).output().unwrap();
    assert_eq!(text(&out.stdout), "a你b\n");
    let frames = String::from_utf8_lossy(&out.stderr).matches(r#""type":"stdout""#).count();
    assert!(frames >= 2, "expected the output in two frames:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn invalid_and_cut_sequences_become_replacement_characters() {
    let d = Daemon::start();
    let out = d.ferry()
        .args(["run", "-n", "--encoding", "gbk", &d.target(), "--", r"printf 'x\377y\304'"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "x\u{fffd}y\u{fffd}");
}

#[test]
fn the_session_decodes_each_command() {
    let d = Daemon::start();
    let input = format!("printf '{SENTENCE_GBK_PRINTF}\\n'\nprintf '\\304'\nprintf '\\343\\n'\n");
    let mut c = d.ferry();
    c.args(["--encoding", "gbk", &d.target()]);
    let out = run_with_input(c, input.as_bytes());
    // A command's cut character ends with the command: it does not join the next one's output.
    assert_eq!(text(&out.stdout), format!("{SENTENCE}\n\u{fffd}\u{fffd}\n"));
    assert!(out.status.success(), "{out:?}");

    let mut c = d.ferry();
    c.env("FERRY_ENCODING", "gbk").arg(d.target());
    let out = run_with_input(c, format!("printf '{SENTENCE_GBK_PRINTF}'\n").as_bytes());
    assert_eq!(text(&out.stdout), SENTENCE);
}

#[test]
fn an_unknown_label_is_a_usage_error_naming_it() {
    let d = Daemon::start();
    let out = d.ferry().args(["run", "-n", "--encoding", "klingon", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"klingon\""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = d.ferry().env("FERRY_ENCODING", "ebcdic-ish").args(["run", "-n", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FERRY_ENCODING") && err.contains("\"ebcdic-ish\""), "{err}");

    let mut c = d.ferry();
    c.args(["--encoding", "nope", &d.target()]);
    let out = run_with_input(c, b"true\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope\""));
    assert_eq!(d.log.count("authenticated"), 0, "a usage error connects to nothing:\n{}", d.log.text());
}

#[test]
fn get_stays_byte_exact() {
    let d = Daemon::start();
    common::write_file(&d.path("legacy.txt"), SENTENCE_GBK);
    let out = d.ferry().env("FERRY_ENCODING", "gbk").args(["get", &d.target(), "legacy.txt", "-"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, SENTENCE_GBK);

    // In a session too, `get REMOTE -` writes the file's bytes.
    let mut c = d.ferry();
    c.args(["--encoding", "gbk", &d.target()]);
    let out = run_with_input(c, b"get legacy.txt -\n");
    assert_eq!(out.stdout, SENTENCE_GBK);

    // --encoding is not an option of the file commands.
    let out = d.ferry().args(["--encoding", "gbk", "get", &d.target(), "legacy.txt", "-"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = d.ferry().args(["get", "--encoding", "gbk", &d.target(), "legacy.txt", "-"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
