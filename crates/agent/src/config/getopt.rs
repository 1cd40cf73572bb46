//! glibc's `getopt_long`, reduced to what qemu-ga's command line needs, with its exact
//! diagnostics.
//!
//! qemu-ga never looks at non-option arguments, so instead of permuting `argv` this walks
//! it and yields the options in the order glibc returns them: non-options are skipped
//! (or end the scan under `POSIXLY_CORRECT`), `--` ends the scan, short options cluster
//! (`-vd`), a required argument is the rest of the cluster or the next element (whatever
//! it looks like), an optional argument (`F::`) must be attached, and a long option may
//! be abbreviated to any unambiguous prefix.
//!
//! Extension options (ours, not qemu-ga's) live in a second table that is consulted only
//! when no qemu-ga option matches, so every abbreviation qemu-ga accepts keeps its
//! meaning (`--fs` is still `--fsfreeze-hook`) and its error texts stay identical.

/// Whether an option takes an argument (`has_arg` of `struct option`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HasArg {
    /// `no_argument`
    No,
    /// `required_argument`
    Required,
    /// `optional_argument`: only `--name=value` or an attached `-Xvalue`.
    Optional,
}

/// One long option: its name, argument kind and the value getopt returns for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LongOpt<V> {
    pub name: &'static str,
    pub has_arg: HasArg,
    pub val: V,
}

/// One short option character of the optstring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortOpt<V> {
    pub ch: char,
    pub has_arg: HasArg,
    pub val: V,
}

/// What one call of `getopt_long` returns, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event<V> {
    /// A recognised option with its argument, if any.
    Opt(V, Option<String>),
    /// `'?'`: getopt printed this message (without the newline) on stderr.
    Error(String),
}

/// The option tables.
pub(crate) struct Spec<'a, V> {
    pub short: &'a [ShortOpt<V>],
    pub long: &'a [LongOpt<V>],
    pub extensions: &'a [LongOpt<V>],
}

/// Walks `args` (without argv\[0\]) like repeated `getopt_long` calls until it returns -1.
/// `require_order` is glibc's `POSIXLY_CORRECT` mode: stop at the first non-option.
pub(crate) fn scan<V: Copy + PartialEq>(
    argv0: &str,
    args: &[String],
    spec: &Spec<'_, V>,
    require_order: bool,
) -> Vec<Event<V>> {
    let mut events = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            if require_order {
                break;
            }
            continue;
        }
        if let Some(body) = arg.strip_prefix("--") {
            events.push(long_option(argv0, body, args, &mut i, spec));
            continue;
        }
        // A cluster of short options: "-vdmunix-listen".
        let cluster = &arg[1..];
        for (pos, c) in cluster.char_indices() {
            let rest = &cluster[pos + c.len_utf8()..];
            let Some(opt) = spec.short.iter().find(|o| o.ch == c) else {
                events.push(Event::Error(format!("{argv0}: invalid option -- '{c}'")));
                continue;
            };
            match opt.has_arg {
                HasArg::No => events.push(Event::Opt(opt.val, None)),
                HasArg::Optional => {
                    let value = (!rest.is_empty()).then(|| rest.to_string());
                    events.push(Event::Opt(opt.val, value));
                    break;
                }
                HasArg::Required => {
                    if !rest.is_empty() {
                        events.push(Event::Opt(opt.val, Some(rest.to_string())));
                    } else if let Some(next) = args.get(i) {
                        i += 1;
                        events.push(Event::Opt(opt.val, Some(next.clone())));
                    } else {
                        events.push(Event::Error(format!(
                            "{argv0}: option requires an argument -- '{c}'"
                        )));
                    }
                    break;
                }
            }
        }
    }
    events
}

/// `process_long_option` for `--<body>`; `next` indexes the element after it.
fn long_option<V: Copy + PartialEq>(
    argv0: &str,
    body: &str,
    args: &[String],
    next: &mut usize,
    spec: &Spec<'_, V>,
) -> Event<V> {
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let found = match lookup(spec.long, name) {
        Lookup::Found(o) => Some(o),
        Lookup::Ambiguous(names) => return ambiguous(argv0, body, &names),
        Lookup::None => match lookup(spec.extensions, name) {
            Lookup::Found(o) => Some(o),
            Lookup::Ambiguous(names) => return ambiguous(argv0, body, &names),
            Lookup::None => None,
        },
    };
    let Some(opt) = found else {
        return Event::Error(format!("{argv0}: unrecognized option '--{body}'"));
    };
    match (opt.has_arg, value) {
        (HasArg::No, Some(_)) => Event::Error(format!(
            "{argv0}: option '--{}' doesn't allow an argument",
            opt.name
        )),
        (_, Some(v)) => Event::Opt(opt.val, Some(v.to_string())),
        (HasArg::Required, None) => match args.get(*next) {
            Some(v) => {
                *next += 1;
                Event::Opt(opt.val, Some(v.clone()))
            }
            None => Event::Error(format!(
                "{argv0}: option '--{}' requires an argument",
                opt.name
            )),
        },
        (HasArg::No | HasArg::Optional, None) => Event::Opt(opt.val, None),
    }
}

fn ambiguous<V>(argv0: &str, body: &str, names: &[&str]) -> Event<V> {
    let mut msg = format!("{argv0}: option '--{body}' is ambiguous; possibilities:");
    for n in names {
        msg.push_str(&format!(" '--{n}'"));
    }
    Event::Error(msg)
}

enum Lookup<'a, V> {
    Found(&'a LongOpt<V>),
    /// The matching names in table order.
    Ambiguous(Vec<&'static str>),
    None,
}

/// An exact match wins; otherwise a unique prefix. Several prefix matches are ambiguous
/// unless the later ones are aliases of the first (same argument kind and value); glibc
/// then lists the first and every later one that differs from it, in table order.
fn lookup<'a, V: Copy + PartialEq>(table: &'a [LongOpt<V>], name: &str) -> Lookup<'a, V> {
    if let Some(o) = table.iter().find(|o| o.name == name) {
        return Lookup::Found(o);
    }
    let mut matches = table.iter().filter(|o| o.name.starts_with(name));
    let Some(first) = matches.next() else {
        return Lookup::None;
    };
    let differing: Vec<&'static str> = matches
        .filter(|o| o.has_arg != first.has_arg || o.val != first.val)
        .map(|o| o.name)
        .collect();
    if differing.is_empty() {
        Lookup::Found(first)
    } else {
        Lookup::Ambiguous(std::iter::once(first.name).chain(differing).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &[ShortOpt<char>] = &[
        ShortOpt {
            ch: 'v',
            has_arg: HasArg::No,
            val: 'v',
        },
        ShortOpt {
            ch: 'm',
            has_arg: HasArg::Required,
            val: 'm',
        },
        ShortOpt {
            ch: 'F',
            has_arg: HasArg::Optional,
            val: 'F',
        },
    ];
    const LONG: &[LongOpt<char>] = &[
        LongOpt {
            name: "verbose",
            has_arg: HasArg::No,
            val: 'v',
        },
        LongOpt {
            name: "version",
            has_arg: HasArg::No,
            val: 'V',
        },
        LongOpt {
            name: "method",
            has_arg: HasArg::Required,
            val: 'm',
        },
        LongOpt {
            name: "fsfreeze-hook",
            has_arg: HasArg::Optional,
            val: 'F',
        },
        LongOpt {
            name: "verbosity",
            has_arg: HasArg::No,
            val: 'v',
        },
    ];
    const EXT: &[LongOpt<char>] = &[LongOpt {
        name: "fsfreeze-timeout",
        has_arg: HasArg::Required,
        val: 'T',
    }];

    fn run(args: &[&str]) -> Vec<Event<char>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let spec = Spec {
            short: SHORT,
            long: LONG,
            extensions: EXT,
        };
        scan("ga", &args, &spec, false)
    }

    fn opt(c: char, v: Option<&str>) -> Event<char> {
        Event::Opt(c, v.map(String::from))
    }

    #[test]
    fn clusters_attached_and_separate_arguments() {
        assert_eq!(
            run(&["-vmx", "-m", "-v", "x", "-F", "-F/h", "-vF/h"]),
            [
                opt('v', None),
                opt('m', Some("x")),
                opt('m', Some("-v")),
                opt('F', None),
                opt('F', Some("/h")),
                opt('v', None),
                opt('F', Some("/h")),
            ]
        );
    }

    #[test]
    fn non_options_are_skipped_and_double_dash_ends() {
        assert_eq!(run(&["a", "-", "-v", "--", "-m"]), [opt('v', None)]);
        let args = vec!["a".to_string(), "-v".to_string()];
        let spec = Spec {
            short: SHORT,
            long: LONG,
            extensions: EXT,
        };
        assert_eq!(scan("ga", &args, &spec, true), []);
    }

    #[test]
    fn long_options_and_prefixes() {
        assert_eq!(
            run(&[
                "--method=a=b",
                "--me",
                "c",
                "--fs",
                "/z",
                "--fsfreeze-t=5",
                "--verbosi"
            ]),
            [
                opt('m', Some("a=b")),
                opt('m', Some("c")),
                opt('F', None),
                opt('T', Some("5")),
                opt('v', None),
            ]
        );
        // "verbos" matches verbose and verbosity, aliases of each other: not ambiguous.
        assert_eq!(run(&["--verbos"]), [opt('v', None)]);
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            run(&["-x", "--foo=1", "--ver", "--verbose=1", "--method", "-m"]),
            [
                Event::Error("ga: invalid option -- 'x'".into()),
                Event::Error("ga: unrecognized option '--foo=1'".into()),
                Event::Error(
                    "ga: option '--ver' is ambiguous; possibilities: '--verbose' '--version'"
                        .into()
                ),
                Event::Error("ga: option '--verbose' doesn't allow an argument".into()),
                opt('m', Some("-m")),
            ]
        );
        assert_eq!(
            run(&["--method"]),
            [Event::Error(
                "ga: option '--method' requires an argument".into()
            )]
        );
        assert_eq!(
            run(&["-vm"]),
            [
                opt('v', None),
                Event::Error("ga: option requires an argument -- 'm'".into())
            ]
        );
    }
}
