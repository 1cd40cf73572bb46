//! QAPI-style conversion between [`Value`] and typed Rust structs.
//!
//! Decoding reproduces QEMU's QObject input visitor: members are visited in schema
//! order, a missing mandatory member, a wrong JSON type or an enum value outside the
//! enum each give qemu-ga's exact text with the full member path
//! (`vcpus[0].logical-id`), and unknown members are reported only after every known
//! member was visited. Encoding inserts members in schema order, so the serializer's
//! hash order comes out as qemu-ga's.

use crate::value::{Dict, Value};

/// An argument error, with qemu-ga's exact description (always a GenericError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// Where a value sits inside the arguments, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Path<'a> {
    /// The top-level arguments object. `strict` rejects unknown members (requests);
    /// replies are read leniently so newer agents' extra fields do no harm.
    Root {
        /// Reject unknown members.
        strict: bool,
    },
    /// A member of an object.
    Member(&'a Path<'a>, &'a str),
    /// An element of an array.
    Elem(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The top level of a request's arguments.
    pub const ARGS: Path<'static> = Path::Root { strict: true };
    /// The top level of a reply's `return` value.
    pub const REPLY: Path<'static> = Path::Root { strict: false };

    /// The member path as QEMU prints it: `a.b[0].c`.
    pub fn render(&self) -> String {
        match self {
            Path::Root { .. } => String::new(),
            Path::Member(parent, name) => {
                let p = parent.render();
                if p.is_empty() {
                    (*name).to_string()
                } else {
                    format!("{p}.{name}")
                }
            }
            Path::Elem(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }

    fn strict(&self) -> bool {
        match self {
            Path::Root { strict } => *strict,
            Path::Member(p, _) | Path::Elem(p, _) => p.strict(),
        }
    }

    /// `Parameter '<path>' is missing`
    pub fn missing(&self) -> ArgError {
        ArgError(format!("Parameter '{}' is missing", self.render()))
    }

    /// `Invalid parameter type for '<path>', expected: <what>`
    pub fn invalid_type(&self, what: &str) -> ArgError {
        ArgError(format!(
            "Invalid parameter type for '{}', expected: {what}",
            self.render()
        ))
    }

    /// `Parameter '<path>' does not accept value '<v>'`
    pub fn bad_enum(&self, v: &str) -> ArgError {
        ArgError(format!(
            "Parameter '{}' does not accept value '{v}'",
            self.render()
        ))
    }
}

/// A type that can be read from a QAPI value.
pub trait FromQapi: Sized {
    /// Reads the value at `path`; `v` is `None` when the member is absent.
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError>;

    /// [`FromQapi::from_qapi`], free to move data out of `v` instead of copying it
    /// (strings do: a 64 MiB `buf-b64` is not copied). Same results and errors.
    fn from_qapi_take(v: Option<&mut Value>, path: Path<'_>) -> Result<Self, ArgError> {
        Self::from_qapi(v.map(|v| &*v), path)
    }
}

/// A type that can be written as a QAPI value.
pub trait ToQapi {
    /// The value; `None` leaves an optional member out.
    fn to_qapi_opt(&self) -> Option<Value> {
        Some(self.to_qapi())
    }
    /// The value.
    fn to_qapi(&self) -> Value;
    /// The value, consuming `self`: large strings move instead of being copied.
    fn into_qapi(self) -> Value
    where
        Self: Sized,
    {
        self.to_qapi()
    }
    /// Like [`ToQapi::to_qapi_opt`], consuming `self`.
    fn into_qapi_opt(self) -> Option<Value>
    where
        Self: Sized,
    {
        Some(self.into_qapi())
    }
}

/// A guest agent command: its arguments struct, wire name and return type.
pub trait Command: FromQapiDict + ToQapi {
    /// The wire name, e.g. `guest-file-read`.
    const NAME: &'static str;
    /// What a successful call returns.
    type Returns: FromQapi + ToQapi;
}

/// Reads a command's arguments object (a missing `arguments` counts as `{}`).
pub fn decode_args<T: FromQapiDict>(args: &Dict) -> Result<T, ArgError> {
    T::from_qapi_dict(args, Path::ARGS)
}

/// [`decode_args`], moving strings out of `args` instead of copying them (the
/// dispatcher owns the request and drops it afterwards). Same results and errors.
pub fn decode_args_take<T: FromQapiDict>(args: &mut Dict) -> Result<T, ArgError> {
    T::from_qapi_dict_take(args, Path::ARGS)
}

/// Struct-shaped types, read straight from an object's members.
pub trait FromQapiDict: Sized {
    /// Reads the struct from an object's members.
    fn from_qapi_dict(d: &Dict, path: Path<'_>) -> Result<Self, ArgError>;

    /// [`FromQapiDict::from_qapi_dict`], free to move members' data out of `d`.
    fn from_qapi_dict_take(d: &mut Dict, path: Path<'_>) -> Result<Self, ArgError> {
        Self::from_qapi_dict(d, path)
    }
}

/// Reads a required object at `path` (used by the struct macro).
pub fn expect_dict<'v>(v: Option<&'v Value>, path: &Path<'_>) -> Result<&'v Dict, ArgError> {
    match v {
        None => Err(path.missing()),
        Some(Value::Dict(d)) => Ok(d),
        Some(_) => Err(path.invalid_type("object")),
    }
}

/// After the known members were read: the first unknown member is an error
/// (`Parameter '<path>' is unexpected`). Requests only; replies are lenient.
pub fn check_unexpected(d: &Dict, known: &[&str], path: &Path<'_>) -> Result<(), ArgError> {
    if !path.strict()
        || d.iter()
            .all(|(k, _)| known.iter().any(|n| n.as_bytes() == k))
    {
        return Ok(());
    }
    // QEMU names the first key its GHashTable iterator yields among the unvisited ones.
    let inserted: Vec<&[u8]> = d.iter().map(|(k, _)| k).collect();
    let visited: Vec<&[u8]> = known
        .iter()
        .map(|n| n.as_bytes())
        .filter(|n| d.contains_key(n))
        .collect();
    let key = crate::ghash::first_remaining(&inserted, &visited).unwrap_or_default();
    let name = String::from_utf8_lossy(key);
    let p = Path::Member(path, &name);
    Err(ArgError(format!(
        "Parameter '{}' is unexpected",
        p.render()
    )))
}

/// Turns a QAPI string (modified UTF-8, `C0 80` for U+0000) into Rust text.
pub fn string_from_bytes(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        return s.to_owned();
    }
    convert_modified_utf8(b)
}

/// [`string_from_bytes`] on bytes it may keep: valid UTF-8 (nearly always) becomes the
/// String without a copy.
pub fn string_from_vec(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => convert_modified_utf8(e.as_bytes()),
    }
}

fn convert_modified_utf8(b: &[u8]) -> String {
    let mut v = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xC0 && b.get(i + 1) == Some(&0x80) {
            v.push(0);
            i += 2;
        } else {
            v.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&v).into_owned()
}

impl<T: FromQapi> FromQapi for Option<T> {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Ok(None),
            Some(v) => T::from_qapi(Some(v), path).map(Some),
        }
    }

    fn from_qapi_take(v: Option<&mut Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Ok(None),
            Some(v) => T::from_qapi_take(Some(v), path).map(Some),
        }
    }
}

impl<T: ToQapi> ToQapi for Option<T> {
    fn to_qapi_opt(&self) -> Option<Value> {
        self.as_ref().map(ToQapi::to_qapi)
    }
    fn into_qapi_opt(self) -> Option<Value> {
        self.map(ToQapi::into_qapi)
    }
    fn to_qapi(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToQapi::to_qapi)
    }
    fn into_qapi(self) -> Value {
        self.map_or(Value::Null, ToQapi::into_qapi)
    }
}

impl FromQapi for i64 {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Int(i)) => Ok(*i),
            Some(_) => Err(path.invalid_type("integer")),
        }
    }
}

impl ToQapi for i64 {
    fn to_qapi(&self) -> Value {
        Value::Int(*self)
    }
}

impl FromQapi for u64 {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::UInt(u)) => Ok(*u),
            // Negative values wrap, "for backward compatibility" (qobject-input-visitor.c).
            Some(Value::Int(i)) => Ok(*i as u64),
            Some(_) => Err(ArgError(format!(
                "Parameter '{}' expects uint64",
                path.render()
            ))),
        }
    }
}

impl ToQapi for u64 {
    fn to_qapi(&self) -> Value {
        match i64::try_from(*self) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(*self),
        }
    }
}

impl FromQapi for f64 {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Double(d)) => Ok(*d),
            Some(Value::Int(i)) => Ok(*i as f64),
            Some(Value::UInt(u)) => Ok(*u as f64),
            Some(_) => Err(path.invalid_type("number")),
        }
    }
}

impl ToQapi for f64 {
    fn to_qapi(&self) -> Value {
        Value::Double(*self)
    }
}

impl FromQapi for bool {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(path.invalid_type("boolean")),
        }
    }
}

impl ToQapi for bool {
    fn to_qapi(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FromQapi for String {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Str(s)) => Ok(string_from_bytes(s)),
            Some(_) => Err(path.invalid_type("string")),
        }
    }

    fn from_qapi_take(v: Option<&mut Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            Some(Value::Str(s)) => Ok(string_from_vec(std::mem::take(s))),
            v => Self::from_qapi(v.map(|v| &*v), path),
        }
    }
}

impl ToQapi for String {
    fn to_qapi(&self) -> Value {
        Value::Str(self.as_bytes().to_vec())
    }
    fn into_qapi(self) -> Value {
        Value::Str(self.into_bytes())
    }
}

impl<T: FromQapi> FromQapi for Vec<T> {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_qapi(Some(item), Path::Elem(&path, i)))
                .collect(),
            Some(_) => Err(path.invalid_type("array")),
        }
    }
}

impl<T: ToQapi> ToQapi for Vec<T> {
    fn to_qapi(&self) -> Value {
        Value::List(self.iter().map(ToQapi::to_qapi).collect())
    }
    fn into_qapi(self) -> Value {
        Value::List(self.into_iter().map(ToQapi::into_qapi).collect())
    }
}

impl FromQapi for Value {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        v.cloned().ok_or_else(|| path.missing())
    }
}

impl ToQapi for Value {
    fn to_qapi(&self) -> Value {
        self.clone()
    }
}

/// The empty object `{}`: what a command without a return type answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl FromQapi for Empty {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        Self::from_qapi_dict(expect_dict(v, &path)?, path)
    }
}

impl FromQapiDict for Empty {
    fn from_qapi_dict(d: &Dict, path: Path<'_>) -> Result<Self, ArgError> {
        check_unexpected(d, &[], &path)?;
        Ok(Empty)
    }
}

impl ToQapi for Empty {
    fn to_qapi(&self) -> Value {
        Value::Dict(Dict::new())
    }
}

/// Declares a QAPI struct: the Rust struct, and its decoding and encoding with members
/// in schema order. Each member names its wire spelling:
///
/// ```
/// qga_proto::qapi_struct! {
///     /// GuestFileRead: the result of guest-file-read.
///     pub struct Example {
///         /// bytes read
///         pub count: i64 = "count",
///         /// base64 data
///         pub buf_b64: String = "buf-b64",
///         /// optional member: left out when None
///         pub eof: Option<bool> = "eof",
///     }
/// }
/// ```
#[macro_export]
macro_rules! qapi_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $ty:ty = $wire:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::qapi::FromQapi for $name {
            #[allow(unused_variables)]
            fn from_qapi(
                v: Option<&$crate::value::Value>,
                path: $crate::qapi::Path<'_>,
            ) -> Result<Self, $crate::qapi::ArgError> {
                let d = $crate::qapi::expect_dict(v, &path)?;
                <Self as $crate::qapi::FromQapiDict>::from_qapi_dict(d, path)
            }
        }

        impl $crate::qapi::FromQapiDict for $name {
            #[allow(unused_variables)]
            fn from_qapi_dict(
                d: &$crate::value::Dict,
                path: $crate::qapi::Path<'_>,
            ) -> Result<Self, $crate::qapi::ArgError> {
                $(
                    let $field = <$ty as $crate::qapi::FromQapi>::from_qapi(
                        d.get($wire),
                        $crate::qapi::Path::Member(&path, $wire),
                    )?;
                )*
                $crate::qapi::check_unexpected(d, &[$($wire),*], &path)?;
                Ok(Self { $($field),* })
            }

            #[allow(unused_variables)]
            fn from_qapi_dict_take(
                d: &mut $crate::value::Dict,
                path: $crate::qapi::Path<'_>,
            ) -> Result<Self, $crate::qapi::ArgError> {
                $(
                    let $field = <$ty as $crate::qapi::FromQapi>::from_qapi_take(
                        d.get_mut($wire),
                        $crate::qapi::Path::Member(&path, $wire),
                    )?;
                )*
                $crate::qapi::check_unexpected(d, &[$($wire),*], &path)?;
                Ok(Self { $($field),* })
            }
        }

        impl $crate::qapi::ToQapi for $name {
            fn to_qapi(&self) -> $crate::value::Value {
                #[allow(unused_mut)]
                let mut d = $crate::value::Dict::new();
                $(
                    if let Some(v) = $crate::qapi::ToQapi::to_qapi_opt(&self.$field) {
                        d.insert($wire, v);
                    }
                )*
                $crate::value::Value::Dict(d)
            }

            fn into_qapi(self) -> $crate::value::Value {
                #[allow(unused_mut)]
                let mut d = $crate::value::Dict::new();
                $(
                    if let Some(v) = $crate::qapi::ToQapi::into_qapi_opt(self.$field) {
                        d.insert($wire, v);
                    }
                )*
                $crate::value::Value::Dict(d)
            }
        }
    };
}

/// Declares a QAPI enum, written and read as its wire string.
#[macro_export]
macro_rules! qapi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $wire:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )*
        }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// The value with this wire spelling.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl $crate::qapi::FromQapi for $name {
            fn from_qapi(
                v: Option<&$crate::value::Value>,
                path: $crate::qapi::Path<'_>,
            ) -> Result<Self, $crate::qapi::ArgError> {
                let s = <String as $crate::qapi::FromQapi>::from_qapi(v, path)?;
                Self::from_wire(&s).ok_or_else(|| path.bad_enum(&s))
            }
        }

        impl $crate::qapi::ToQapi for $name {
            fn to_qapi(&self) -> $crate::value::Value {
                $crate::value::Value::Str(self.as_str().as_bytes().to_vec())
            }
        }
    };
}

/// Declares a command: `qapi_command!(ArgsType, "guest-name", ReturnType);`
#[macro_export]
macro_rules! qapi_command {
    ($args:ty, $name:literal, $ret:ty) => {
        impl $crate::qapi::Command for $args {
            const NAME: &'static str = $name;
            type Returns = $ret;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::qapi_struct! {
        /// test
        pub struct Cpu {
            /// id
            pub logical_id: i64 = "logical-id",
            /// online
            pub online: bool = "online",
            /// optional
            pub can_offline: Option<bool> = "can-offline",
        }
    }

    crate::qapi_struct! {
        /// test
        pub struct SetCpus {
            /// list
            pub vcpus: Vec<Cpu> = "vcpus",
        }
    }

    fn parse_dict(pairs: Vec<(&str, Value)>) -> Dict {
        let mut d = Dict::new();
        for (k, v) in pairs {
            d.insert(k, v);
        }
        d
    }

    #[test]
    fn nested_paths_in_errors() {
        let cpu = parse_dict(vec![("online", Value::Bool(true))]);
        let args = parse_dict(vec![("vcpus", Value::List(vec![Value::Dict(cpu)]))]);
        let err = SetCpus::from_qapi_dict(&args, Path::ARGS).unwrap_err();
        assert_eq!(err.0, "Parameter 'vcpus[0].logical-id' is missing");

        let cpu = parse_dict(vec![
            ("logical-id", Value::Int(1)),
            ("online", Value::Bool(true)),
            ("zzz", Value::Int(1)),
        ]);
        let args = parse_dict(vec![("vcpus", Value::List(vec![Value::Dict(cpu)]))]);
        let err = SetCpus::from_qapi_dict(&args, Path::ARGS).unwrap_err();
        assert_eq!(err.0, "Parameter 'vcpus[0].zzz' is unexpected");

        let args = parse_dict(vec![("vcpus", Value::List(vec![Value::Int(1)]))]);
        let err = SetCpus::from_qapi_dict(&args, Path::ARGS).unwrap_err();
        assert_eq!(
            err.0,
            "Invalid parameter type for 'vcpus[0]', expected: object"
        );
    }

    #[test]
    fn type_error_beats_unexpected_and_null_is_rejected() {
        let args = parse_dict(vec![
            ("zz", Value::Int(1)),
            ("logical-id", Value::Str(b"x".to_vec())),
        ]);
        let err = Cpu::from_qapi_dict(&args, Path::ARGS).unwrap_err();
        assert_eq!(
            err.0,
            "Invalid parameter type for 'logical-id', expected: integer"
        );
        let args = parse_dict(vec![
            ("logical-id", Value::Int(1)),
            ("online", Value::Bool(true)),
            ("can-offline", Value::Null),
        ]);
        let err = Cpu::from_qapi_dict(&args, Path::ARGS).unwrap_err();
        assert_eq!(
            err.0,
            "Invalid parameter type for 'can-offline', expected: boolean"
        );
    }

    #[test]
    fn uint64_wraps_negative() {
        assert_eq!(
            u64::from_qapi(Some(&Value::Int(-1)), Path::ARGS).unwrap(),
            u64::MAX
        );
        let e = u64::from_qapi(Some(&Value::Double(1.0)), Path::Member(&Path::ARGS, "x"));
        assert_eq!(e.unwrap_err().0, "Parameter 'x' expects uint64");
    }
}
