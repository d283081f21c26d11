//! Standard output for the commands. A reader that goes away (`list | head -1`)
//! is not an error: the command stops printing and ends quietly, as `cat`
//! and `grep` do; any other write error is reported once at the end.

use std::io::{self, Write};

/// Lines to stdout that stop quietly on a closed pipe.
#[derive(Debug, Default)]
pub struct Out {
    /// The reader went away or writing failed: print nothing more.
    closed: bool,
    /// The first write error other than a closed pipe.
    error: Option<io::Error>,
}

impl Out {
    pub fn new() -> Self {
        Out::default()
    }

    /// Writes `text` as it is (add the newline yourself).
    pub fn print(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut stdout = io::stdout().lock();
        if let Err(e) = stdout.write_all(text.as_bytes()) {
            self.fail(e);
        }
    }

    /// Writes `text` and a newline.
    pub fn line(&mut self, text: impl AsRef<str>) {
        let mut s = text.as_ref().to_owned();
        s.push('\n');
        self.print(&s);
    }

    /// Whether the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn fail(&mut self, e: io::Error) {
        self.closed = true;
        if e.kind() != io::ErrorKind::BrokenPipe && self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Flushes; a write error other than a closed pipe is the result.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.closed
            && let Err(e) = io::stdout().lock().flush()
        {
            self.fail(e);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
