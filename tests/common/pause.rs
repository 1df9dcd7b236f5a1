//! A TCP relay for one connection that holds the client's bytes back at a
//! point the test chooses: past `pause_at` bytes from the client it stops
//! reading them (the client, its socket buffers full, blocks) and says so,
//! until the test lets it go on. What the client did meanwhile (say, a file
//! it is sending changed) is then certain to fall inside the transfer.

use super::WAIT;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct PausingRelay {
    /// Where the client connects (`HOST:PORT`).
    pub target: String,
    paused: Receiver<()>,
    go: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl PausingRelay {
    /// Relays one connection to `to`, pausing past `pause_at` client bytes.
    pub fn start(to: SocketAddr, pause_at: u64) -> PausingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // A small receive buffer (inherited by the accepted socket), so the
        // client cannot park much beyond `pause_at` in the relay's kernel.
        let size: libc::c_int = 64 * 1024;
        // SAFETY: SO_RCVBUF reads one c_int.
        let r = unsafe {
            libc::setsockopt(listener.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), 4)
        };
        assert_eq!(r, 0);
        let target = listener.local_addr().unwrap().to_string();
        let (paused_tx, paused) = channel();
        let (go, go_rx) = channel::<()>();
        let thread = std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let server = TcpStream::connect(to).unwrap();
            for s in [&client, &server] {
                s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            }
            let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            let down = std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Write);
            });
            let (mut from_client, mut to_server) = (client, server);
            let mut buf = vec![0u8; 16 * 1024];
            let mut seen = 0u64;
            let mut held = false;
            loop {
                let want = if held { buf.len() } else { buf.len().min((pause_at - seen) as usize).max(1) };
                let n = match from_client.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
                seen += n as u64;
                if !held && seen >= pause_at {
                    held = true;
                    let _ = paused_tx.send(());
                    if go_rx.recv_timeout(WAIT * 3).is_err() {
                        break;
                    }
                }
            }
            let _ = to_server.shutdown(Shutdown::Write);
            let _ = down.join();
        });
        PausingRelay { target, paused, go, thread: Some(thread) }
    }

    /// Waits until the client's bytes are held back.
    pub fn wait_paused(&self) {
        self.paused.recv_timeout(WAIT * 3).expect("the relay saw the bytes it pauses at");
    }

    /// Lets the client's bytes through again.
    pub fn go_on(&self) {
        let _ = self.go.send(());
    }
}

impl Drop for PausingRelay {
    fn drop(&mut self) {
        let _ = self.go.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
