//! A stream's failure, kept: a decoder that met damage fails every later read the same
//! way rather than go on decoding from a state it cannot trust (`zip`'s deflate entries,
//! `unzstd`).

use std::io::{self, Read};

/// A reader that fails, every time, as a stream once did.
pub(crate) struct Failed {
    kind: io::ErrorKind,
    message: String,
}

impl Failed {
    pub(crate) fn new(error: io::Error) -> Failed {
        Failed {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// The failure, once more.
    pub(crate) fn error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.error())
    }
}
