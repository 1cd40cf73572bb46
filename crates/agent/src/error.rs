//! The error a command reports. qemu-ga reports every command failure as a
//! GenericError whose `desc` is a sentence for the operator; this type carries that
//! sentence and nothing else, so there is exactly one conversion to the wire.

use qga_proto::ArgError;

/// A command failure: becomes `{"error": {"class": "GenericError", "desc": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    desc: String,
    /// Not an answer: the command could not run without waiting where it was asked
    /// not to (see [`Error::deferred`]).
    deferred: bool,
}

impl Error {
    /// An error with this exact description.
    pub fn new(desc: impl Into<String>) -> Self {
        Self {
            desc: desc.into(),
            deferred: false,
        }
    }

    /// The command was asked to run only if it need not wait (the reader thread
    /// answering a small read itself), and it would have to: nothing was done and
    /// the request goes to the executor instead. Never sent to the host.
    pub fn deferred() -> Self {
        Self {
            desc: String::new(),
            deferred: true,
        }
    }

    /// Whether this is [`Error::deferred`].
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// `<msg>: <strerror(errno)>`, as QEMU's `error_setg_errno` writes it (the suffix is
    /// left out when the error carries no errno).
    pub fn errno(msg: impl Into<String>, err: &std::io::Error) -> Self {
        let mut desc = msg.into();
        if let Some(code) = err.raw_os_error().filter(|&c| c != 0) {
            desc.push_str(": ");
            desc.push_str(&strerror(code));
        }
        Self {
            desc,
            deferred: false,
        }
    }

    /// The description sent to the host.
    pub fn desc(&self) -> &str {
        &self.desc
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for Error {}

impl From<ArgError> for Error {
    fn from(e: ArgError) -> Self {
        Self::new(e.0)
    }
}

/// The C library's text for an errno value (`strerror`), e.g. "No such file or directory".
pub fn strerror(code: i32) -> String {
    if cfg!(not(target_env = "gnu")) {
        return crate::sys::errtext::glibc_strerror(code);
    }
    let s = std::io::Error::from_raw_os_error(code).to_string();
    // Rust appends " (os error N)" to the C library's text.
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Shorthand for command results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_suffix_only_with_errno() {
        let e = Error::errno("failed to open file", &std::io::Error::from_raw_os_error(2));
        assert_eq!(e.desc(), "failed to open file: No such file or directory");
        let e = Error::errno("Invalid time", &std::io::Error::other("x"));
        assert_eq!(e.desc(), "Invalid time");
    }
}
