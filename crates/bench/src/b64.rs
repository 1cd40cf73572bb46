//! Base64 for the benchmark client: [`qga_proto::base64`]'s encoder and strict decoder.

pub use qga_proto::base64::encode_into;

/// Decodes `text` into `out` (cleared first); an error for anything that is not
/// base64.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    match qga_proto::base64::decode_strict_into(text, out) {
        true => Ok(()),
        false => Err("the agent sent invalid base64".into()),
    }
}
