//! Base64 for the client: [`qga_proto::base64`]'s encoder, and its strict decoder for
//! what agents send back.

pub use qga_proto::base64::{
    decode_strict as decode, decode_strict_into as decode_into, encode, encode_into,
};
