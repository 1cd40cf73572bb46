//! Base64 as qemu-ga speaks it: [`qga_proto::base64`] (strict padded output, QEMU's
//! character check then GLib's lenient decoding), with decoding failures as the
//! agent's error carrying QEMU's text.

use crate::error::Error;

pub use qga_proto::base64::{encode, INVALID_CHARACTERS};

/// Decodes as QEMU's `qbase64_decode`; an invalid character is
/// `Base64 data contains invalid characters`.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
    qga_proto::base64::decode(text).map_err(|e| Error::new(e.to_string()))
}

/// [`decode`], writing the result over the text: no second buffer for a 64 MiB write.
pub fn decode_vec(buf: Vec<u8>) -> Result<Vec<u8>, Error> {
    qga_proto::base64::decode_vec(buf).map_err(|e| Error::new(e.to_string()))
}
