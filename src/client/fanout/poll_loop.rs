//! The one event loop of a fan-out, whatever the transport: sleep until the
//! nearest deadline or an event, hand each event to the transport, turn INT
//! and TERM into the transport's interrupt, sweep. A transport (`tcp`, `udp`)
//! implements `Transport`; the loop never looks inside a host. Imports `fan`.

use super::fan::Fan;
use mio::event::Event;
use mio::{Events, Interest, Token};
use std::io;
use std::time::Duration;

/// How long the hosts have to end after our stdout failed before their
/// connections are closed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The signal source's token; transports use the tokens below it.
pub(super) const SIGNALS: Token = Token(usize::MAX - 1);

/// What the loop asks of a transport each turn.
pub(super) trait Transport {
    /// Starts or sends what is due; how long the loop may then sleep
    /// (None: until an event).
    fn prepare(&mut self, fan: &mut Fan) -> Option<Duration>;
    /// One readiness event for one of the transport's tokens.
    fn on_event(&mut self, fan: &mut Fan, ev: &Event);
    /// INT or TERM arrived.
    fn on_signal(&mut self, fan: &mut Fan, sig: i32);
    /// After the batch of events: expired deadlines.
    fn sweep(&mut self, fan: &mut Fan);
}

/// Runs until every host has its outcome. Once our stdout fails (its reader
/// gone, a full disk), the hosts are stopped as by one INT: their output
/// has nowhere to go.
pub(super) fn drive(fan: &mut Fan, t: &mut impl Transport) -> io::Result<()> {
    let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
    fan.poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    // When our stdout failed: the first stop (as one INT), then a second one
    // (as a second INT: the connections closed, ferryd ends the commands)
    // if the hosts have not ended within `STOP_GRACE`. One INT can be lost:
    // a remote shell that takes it between its fork and its exec passes it
    // to nobody, and `yes` would then run (and be read) for ever.
    let mut stopped: Option<std::time::Instant> = None;
    let mut stopped_again = false;
    while !fan.all_done() {
        if fan.out.failed.is_some() {
            match stopped {
                None => {
                    stopped = Some(std::time::Instant::now());
                    t.on_signal(fan, libc::SIGPIPE);
                    continue;
                }
                Some(at) if !stopped_again && at.elapsed() >= STOP_GRACE => {
                    stopped_again = true;
                    t.on_signal(fan, libc::SIGPIPE);
                    continue;
                }
                _ => {}
            }
        }
        let mut timeout = t.prepare(fan);
        if let (Some(at), false) = (stopped, stopped_again) {
            let left = STOP_GRACE.saturating_sub(at.elapsed());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if fan.all_done() {
            break;
        }
        fan.out.flush();
        if let Err(e) = fan.poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            if ev.token() == SIGNALS {
                for sig in signals.pending() {
                    t.on_signal(fan, sig);
                }
            } else {
                t.on_event(fan, ev);
            }
        }
        t.sweep(fan);
    }
    fan.out.flush();
    Ok(())
}
