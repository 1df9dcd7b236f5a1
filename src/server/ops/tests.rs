//! `ops::start` decides for both transports: what each may ask for, and what
//! a full set of child slots means to each.

use super::*;
use crate::proto::frame::parse_header;
use crate::server::testing::Harness;

fn start_json(h: &mut Harness, json: &str, via: Via) -> Result<Start, ProtoError> {
    let header = parse_header(json.as_bytes()).expect("a header");
    start(Request::from_header(&header), header.id.as_ref(), &header.kind, via, &mut h.ctx())
}

const UDP: Via = Via::Udp { slot: 0, running: 0 };
const TCP: Via = Via::Tcp { key: 7 };

fn code(r: Result<Start, ProtoError>) -> ErrorCode {
    match r {
        Err(e) => e.code,
        Ok(_) => panic!("an error was expected"),
    }
}

#[test]
fn a_datagram_gets_ping_stat_and_exec_only() {
    let mut h = Harness::new();
    assert!(matches!(start_json(&mut h, r#"{"type":"ping"}"#, UDP), Ok(Start::Reply(Reply::Pong))));
    for json in [r#"{"type":"list","path":"."}"#, r#"{"type":"get","path":"f"}"#, r#"{"type":"bye"}"#] {
        assert_eq!(code(start_json(&mut h, json, UDP)), ErrorCode::UnknownType, "{json}");
    }
    assert_eq!(code(start_json(&mut h, r#"{"type":"exec","cmd":"true","stdin":true}"#, UDP)), ErrorCode::BadRequest);
    // Over TCP, bye and a late stdin answer nothing (the connection handles bye).
    assert!(matches!(start_json(&mut h, r#"{"type":"bye"}"#, TCP), Ok(Start::Nothing)));
}

#[test]
fn full_child_slots_queue_a_connection_and_make_a_datagram_busy() {
    let mut h = Harness::new();
    h.cfg.max_children = 0;
    let exec = r#"{"type":"exec","argv":["true"]}"#;
    assert!(matches!(start_json(&mut h, exec, TCP), Ok(Start::Queued(_))));
    assert_eq!(h.waiters.iter().copied().collect::<Vec<_>>(), [7], "the connection waits its turn");
    assert_eq!(code(start_json(&mut h, exec, UDP)), ErrorCode::Busy);
    // A free slot, but a connection waiting for one: it comes first.
    h.cfg.max_children = 1;
    assert_eq!(code(start_json(&mut h, exec, UDP)), ErrorCode::Busy);
    // The policy answers before the slots do, on both transports.
    h.cfg.allow_exec = false;
    assert_eq!(code(start_json(&mut h, exec, TCP)), ErrorCode::ExecDisabled);
    assert_eq!(code(start_json(&mut h, exec, UDP)), ErrorCode::ExecDisabled);
}
