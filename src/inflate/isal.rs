//! The `isal` backend: Intel ISA-L's igzip inflate (system `libisal`) on the deflate
//! body, which also takes the member's CRC-32 over each output window and checks the
//! trailer (`ISAL_GZIP_NO_HDR_VER`); the header is read by `header`, as in the default
//! build (ISA-L's own header reader fails on fields split over calls). Input is taken
//! straight from the caller's compressed bytes and output written straight into the
//! caller's block.

use std::io;

use isal_sys::igzip_lib as ffi;

use super::header::Header;
use super::{Backend, Step, invalid};

/// Inflates gzip members with ISA-L.
pub struct Isal {
    // Boxed: the state is large and ISA-L keeps pointers into it.
    state: Box<ffi::inflate_state>,
    /// The member's header while it is being read; `None` once it has been.
    header: Option<Header>,
}

// SAFETY: the state holds raw pointers only into itself and, during a call, into
// buffers borrowed for that call; nothing is shared between threads.
unsafe impl Send for Isal {}

impl Isal {
    pub fn new() -> Isal {
        // SAFETY: inflate_state is a plain C struct; zeroed is a valid start and
        // isal_inflate_init sets every field it needs.
        let mut state: Box<ffi::inflate_state> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `state` points to a live, owned inflate_state.
        unsafe { ffi::isal_inflate_init(&mut *state) };
        state.crc_flag = ffi::ISAL_GZIP_NO_HDR_VER;
        Isal {
            state,
            header: Some(Header::default()),
        }
    }
}

impl Backend for Isal {
    type Guard = ();

    /// Output bytes per ISA-L call: ISA-L takes the CRC of each call's output right
    /// after, while it is in L2 (512 KiB per core here).
    const WINDOW: usize = 256 * 1024;

    fn guard(&self) {}

    fn begin(&mut self) {
        // SAFETY: `state` is a live inflate_state.
        unsafe { ffi::isal_inflate_reset(&mut *self.state) };
        self.state.crc_flag = ffi::ISAL_GZIP_NO_HDR_VER;
        self.header = Some(Header::default());
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> (Step, io::Result<()>) {
        let mut skipped = 0;
        if let Some(header) = &mut self.header {
            match header.read(input) {
                Ok(n) => skipped = n,
                Err(e) => return (Step::default(), Err(e)),
            }
            if !header.done() {
                let step = Step {
                    consumed: skipped,
                    ..Step::default()
                };
                return (step, Ok(()));
            }
            self.header = None;
        }
        let input = &input[skipped..];
        let in_len = input.len().min(u32::MAX as usize);
        let out_len = out.len().min(u32::MAX as usize);
        self.state.next_in = input.as_ptr() as *mut u8;
        self.state.avail_in = in_len as u32;
        self.state.next_out = out.as_mut_ptr();
        self.state.avail_out = out_len as u32;
        // SAFETY: next_in/avail_in describe `input` (ISA-L only reads it), next_out/
        // avail_out describe `out`; both outlive the call.
        let ret = unsafe { ffi::isal_inflate(&mut *self.state) };
        let step = Step {
            consumed: skipped + in_len - self.state.avail_in as usize,
            produced: out_len - self.state.avail_out as usize,
            end: self.state.block_state == ffi::isal_block_state_ISAL_BLOCK_FINISH,
        };
        // The pointers must not outlive the borrowed buffers.
        self.state.next_in = std::ptr::null_mut();
        self.state.avail_in = 0;
        self.state.next_out = std::ptr::null_mut();
        self.state.avail_out = 0;
        if ret < 0 {
            // ISA-L counts in `avail_out` only the bytes it decoded before the error (a
            // checksum is checked after its member's bytes were written): they are
            // handed out, as the default build does, so what a damaged stream yields
            // does not depend on the window sizes.
            let what = match ret {
                ffi::ISAL_INCORRECT_CHECKSUM => "gzip member checksum mismatch",
                ffi::ISAL_INVALID_WRAPPER => "not a gzip member (invalid header)",
                _ => "corrupt deflate data",
            };
            return (step, Err(invalid(what)));
        }
        (step, Ok(()))
    }
}
