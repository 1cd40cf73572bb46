//! Which guests to talk to: socket paths (globs expanded) and libvirt domains, each
//! with a short name for prefixing its output.

use std::path::{Path, PathBuf};

/// How to reach one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A unix socket.
    Socket(PathBuf),
    /// A libvirt domain.
    Libvirt(String),
}

/// One guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in output: the socket's file name without `.sock`, or the domain.
    pub name: String,
    /// How to reach it.
    pub kind: Kind,
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style match of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
/// A leading dot must be matched explicitly.
pub fn wildmatch(pat: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pat.first() != Some(&b'.') {
        return false;
    }
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(close) = p.iter().skip(2).position(|&c| c == b']').map(|i| i + 2) else {
                    return n.first() == Some(&b'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut set = &p[1..close];
                let negate = matches!(set.first(), Some(b'!' | b'^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == b'-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[close + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pat, name)
}

/// Expands a glob over the file system, component by component; sorted.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let (mut found, comps): (Vec<PathBuf>, Vec<&str>) =
        if let Some(rest) = pattern.strip_prefix('/') {
            (vec![PathBuf::from("/")], rest.split('/').collect())
        } else {
            (vec![PathBuf::new()], pattern.split('/').collect())
        };
    for comp in comps.iter().filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !has_magic(comp) {
                let p = base.join(comp);
                if p.symlink_metadata().is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<_> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .filter(|n| wildmatch(comp.as_bytes(), n.as_encoded_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.sort();
    found
}

/// The targets, and whether this is a fan-out (several targets, or any glob).
pub fn resolve(sockets: &[String], domains: &[String]) -> Result<(Vec<Target>, bool), String> {
    let mut paths = Vec::new();
    let mut fanout = sockets.len() + domains.len() > 1;
    for s in sockets {
        if has_magic(s) {
            fanout = true;
            let hits = glob(s);
            if hits.is_empty() {
                return Err(format!("no socket matches {s}"));
            }
            paths.extend(hits);
        } else {
            paths.push(PathBuf::from(s));
        }
    }
    paths.dedup();
    let short = |p: &Path| {
        let n = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        n.strip_suffix(".sock").map(str::to_string).unwrap_or(n)
    };
    let names: Vec<String> = paths.iter().map(|p| short(p)).collect();
    // Two sockets with the same file name in different directories: full paths for all.
    let mut sorted = names.clone();
    sorted.sort();
    let ambiguous = sorted.windows(2).any(|w| w[0] == w[1]);
    let mut targets = Vec::new();
    for (p, n) in paths.iter().zip(names) {
        let name = if ambiguous {
            p.display().to_string()
        } else {
            n
        };
        targets.push(Target {
            name,
            kind: Kind::Socket(p.clone()),
        });
    }
    for d in domains {
        targets.push(Target {
            name: d.clone(),
            kind: Kind::Libvirt(d.clone()),
        });
    }
    Ok((targets, fanout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(wildmatch(b"*.sock", b"web1.sock"));
        assert!(!wildmatch(b"*.sock", b".hidden.sock"));
        assert!(wildmatch(b"web[0-9].sock", b"web7.sock"));
        assert!(!wildmatch(b"web[!0-9].sock", b"web7.sock"));
        assert!(wildmatch(b"w?b*", b"web"));
        assert!(!wildmatch(b"a*b", b"acd"));
    }

    #[test]
    fn glob_and_names() {
        let dir = std::env::temp_dir().join(format!("qga-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        for f in ["a/x.sock", "a/y.sock", "b/x.sock", "a/z.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let pat = format!("{}/*/*.sock", dir.display());
        let (t, fan) = resolve(&[pat], &["vm9".into()]).unwrap();
        assert!(fan);
        let names: Vec<_> = t.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names.len(), 4);
        assert!(
            names[0].ends_with("/a/x.sock") && names[2].ends_with("/b/x.sock"),
            "{names:?}"
        );
        assert!(names[1].ends_with("/a/y.sock"), "{names:?}");
        assert_eq!(t[3].kind, Kind::Libvirt("vm9".into()));
        let (t, _) = resolve(&[format!("{}/a/*.sock", dir.display())], &[]).unwrap();
        assert_eq!([t[0].name.as_str(), t[1].name.as_str()], ["x", "y"]);
        assert!(resolve(&[format!("{}/*.nope", dir.display())], &[]).is_err());
        let (t, fan) = resolve(&["/run/one.sock".into()], &[]).unwrap();
        assert!(!fan);
        assert_eq!(t[0].name, "one");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
