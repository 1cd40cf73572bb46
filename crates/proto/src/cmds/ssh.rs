//! guest-ssh-get-authorized-keys, -add-authorized-keys, -remove-authorized-keys.

use crate::qapi::Empty;
use crate::{qapi_command, qapi_struct};

qapi_struct! {
    /// guest-ssh-get-authorized-keys: the keys in a user's `~/.ssh/authorized_keys`
    /// (comments and blank lines left out, in reverse file order).
    pub struct GuestSshGetAuthorizedKeysArgs {
        /// The account name.
        pub username: String = "username",
    }
}
qapi_command!(
    GuestSshGetAuthorizedKeysArgs,
    "guest-ssh-get-authorized-keys",
    GuestAuthorizedKeys
);

qapi_struct! {
    /// The reply of guest-ssh-get-authorized-keys.
    pub struct GuestAuthorizedKeys {
        /// The public keys, one line each.
        pub keys: Vec<String> = "keys",
    }
}

qapi_struct! {
    /// guest-ssh-add-authorized-keys: append keys that are not there yet to a user's
    /// `~/.ssh/authorized_keys`, or replace the file's contents with them (`reset`).
    pub struct GuestSshAddAuthorizedKeysArgs {
        /// The account name.
        pub username: String = "username",
        /// OpenSSH public key lines.
        pub keys: Vec<String> = "keys",
        /// Replace the file instead of appending.
        pub reset: Option<bool> = "reset",
    }
}
qapi_command!(
    GuestSshAddAuthorizedKeysArgs,
    "guest-ssh-add-authorized-keys",
    Empty
);

qapi_struct! {
    /// guest-ssh-remove-authorized-keys: drop every line equal to one of the keys from
    /// a user's `~/.ssh/authorized_keys`.
    pub struct GuestSshRemoveAuthorizedKeysArgs {
        /// The account name.
        pub username: String = "username",
        /// OpenSSH public key lines.
        pub keys: Vec<String> = "keys",
    }
}
qapi_command!(
    GuestSshRemoveAuthorizedKeysArgs,
    "guest-ssh-remove-authorized-keys",
    Empty
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qapi::{decode_args, ToQapi};
    use crate::value::{Dict, Value};

    #[test]
    fn wire_shapes() {
        let k = GuestAuthorizedKeys {
            keys: vec!["algo b".into(), "algo a".into()],
        };
        assert_eq!(k.to_qapi().to_json(), br#"{"keys": ["algo b", "algo a"]}"#);

        let mut args = Dict::new();
        args.insert("username", Value::str("u"));
        args.insert("keys", Value::List(vec![Value::Int(1)]));
        let e = decode_args::<GuestSshAddAuthorizedKeysArgs>(&args).unwrap_err();
        assert_eq!(
            e.0,
            "Invalid parameter type for 'keys[0]', expected: string"
        );

        let mut args = Dict::new();
        args.insert("username", Value::str("u"));
        let e = decode_args::<GuestSshRemoveAuthorizedKeysArgs>(&args).unwrap_err();
        assert_eq!(e.0, "Parameter 'keys' is missing");
    }
}
