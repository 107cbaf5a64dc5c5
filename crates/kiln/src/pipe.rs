//! `kiln pipe SOCKET`: QEMU's user-mode network runs this for each guest connection
//! to 169.254.169.254:80 and it copies bytes between its standard input and output and
//! the instance's metadata socket.

use std::sync::Arc;

use anyhow::{Context, Result};

/// Copies stdin to the socket and the socket to stdout. The write side is not
/// half-closed when stdin ends (the HTTP server would drop its answer); instead the
/// pipe ends when the server closes, or two seconds after stdin ended with nothing
/// more coming back (a kept-alive connection the guest has left).
pub(crate) fn pipe(socket: &std::path::Path) -> Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
    let mut to_socket = stream.try_clone()?;
    let mut from_socket = stream;
    let input_done = Arc::new(AtomicBool::new(false));
    let done = input_done.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_socket.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let mut idle_since: Option<std::time::Instant> = None;
    loop {
        match from_socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
                idle_since = None;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if input_done.load(Ordering::SeqCst) {
                    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > std::time::Duration::from_secs(2) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    Ok(())
}
