//! A small typed client for QEMU's QMP socket: greeting, capabilities, one command at
//! a time, events skipped. The QMP crates on crates.io are either async-only or
//! unmaintained; Kiln needs four commands, synchronously, with timeouts.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {0}: {1}")]
    Io(String, std::io::Error),
    #[error("QMP: {0}")]
    Protocol(String),
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    path: String,
}

impl Qmp {
    /// Connects and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Self, QmpError> {
        let p = path.display().to_string();
        let io = |e| QmpError::Io(p.clone(), e);
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
        stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Self { reader: BufReader::new(stream), writer, path: p.clone() };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| QmpError::Io(self.path.clone(), e))?;
        if n == 0 {
            return Err(QmpError::Protocol("the socket closed".into()));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("bad JSON {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).map_err(|e| QmpError::Io(self.path.clone(), e))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Protocol(format!("{command}: {e}")));
            }
            // An asynchronous event: skip it.
        }
    }
}
