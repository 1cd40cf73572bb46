//! guest-ssh-get-authorized-keys, -add-authorized-keys, -remove-authorized-keys:
//! qemu-ga's `commands-posix-ssh.c`, byte for byte in what ends up in the file. The
//! user lookup is a field of [`SshEnv`], so the unit tests below (qemu-ga's
//! `qga-ssh-test`) run on a temporary home for the current user.

use std::path::{Path, PathBuf};

use qga_proto::cmds::ssh::*;
use qga_proto::Empty;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::sys::gfile::{get_contents, set_contents};
use crate::sys::passwd::{os_bytes, Passwd, SystemUsers, UserDb};

/// How users are looked up.
pub struct SshEnv {
    /// The user database (`getpwnam`).
    pub users: Box<dyn UserDb>,
}

impl Default for SshEnv {
    fn default() -> Self {
        SshEnv {
            users: Box::new(SystemUsers),
        }
    }
}

/// `g_build_filename(dir, parts...)`: one `/` between elements, empty elements skipped.
fn build_filename(dir: &Path, parts: &[&str]) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out: Vec<u8> = dir.as_os_str().as_bytes().to_vec();
    for part in parts {
        if out.is_empty() {
            out.extend_from_slice(part.as_bytes());
            continue;
        }
        while out.len() > 1 && out.ends_with(b"/") && out[..out.len() - 1].ends_with(b"/") {
            out.pop();
        }
        if !out.ends_with(b"/") {
            out.push(b'/');
        }
        out.extend_from_slice(part.as_bytes());
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The bytes of a file split on `\n` (`g_strsplit`): the file is read as a C string,
/// and an empty file gives no lines at all.
fn split_lines(contents: &[u8]) -> Vec<Vec<u8>> {
    let text = contents.split(|&b| b == 0).next().unwrap_or_default();
    if text.is_empty() {
        return Vec::new();
    }
    text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn check_keys(keys: &[String]) -> Result<()> {
    for key in keys {
        // Only this sanity check: an empty key is accepted (observed on 10.0.2).
        if key.starts_with('#') || key.contains('\n') {
            return Err(Error::new(format!("invalid OpenSSH public key: '{key}'")));
        }
    }
    Ok(())
}

fn fs_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::errno(format!("{what} '{}'", path.display()), e)
}

impl SshEnv {
    fn lookup(&self, username: &str) -> Result<Passwd> {
        self.users
            .lookup(&os_bytes(username))
            .map_err(|msg| Error::new(format!("failed to lookup user '{username}': {msg}")))
    }

    fn read_authkeys(path: &Path) -> Result<Vec<Vec<u8>>> {
        get_contents(path)
            .map(|c| split_lines(&c))
            .map_err(|msg| Error::new(format!("failed to read '{}': {msg}", path.display())))
    }

    fn write_authkeys(path: &Path, keys: &[Vec<u8>], p: &Passwd) -> Result<()> {
        set_contents(path, &keys.join(&b'\n'))
            .map_err(|msg| Error::new(format!("failed to write to '{}': {msg}", path.display())))?;
        std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid))
            .map_err(|e| fs_error("failed to set ownership of directory", path, &e))?;
        set_mode(path, 0o600).map_err(|e| fs_error("failed to set permissions of", path, &e))
    }

    /// guest-ssh-get-authorized-keys: stripped lines, no blanks or comments, in
    /// reverse file order (qemu-ga prepends).
    pub fn get_keys(&self, username: &str) -> Result<GuestAuthorizedKeys> {
        let p = self.lookup(username)?;
        let path = build_filename(&p.dir, &[".ssh", "authorized_keys"]);
        let mut keys = Vec::new();
        for line in Self::read_authkeys(&path)? {
            let line = strip(&line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            keys.insert(0, String::from_utf8_lossy(line).into_owned());
        }
        Ok(GuestAuthorizedKeys { keys })
    }

    /// guest-ssh-add-authorized-keys.
    pub fn add_keys(&self, username: &str, keys: &[String], reset: bool) -> Result<()> {
        check_keys(keys)?;
        let p = self.lookup(username)?;
        let ssh_path = build_filename(&p.dir, &[".ssh"]);
        let path = build_filename(&ssh_path, &["authorized_keys"]);
        let existing = if reset {
            None
        } else {
            Self::read_authkeys(&path).ok()
        };
        if existing.is_none() && !ssh_path.is_dir() {
            mkdir_for_user(&ssh_path, &p)?;
        }
        let mut lines = existing.unwrap_or_default();
        for key in keys {
            let key = os_bytes(key);
            if !lines.contains(&key) {
                lines.push(key);
            }
        }
        Self::write_authkeys(&path, &lines, &p)
    }

    /// guest-ssh-remove-authorized-keys: a missing file is success.
    pub fn remove_keys(&self, username: &str, keys: &[String]) -> Result<()> {
        check_keys(keys)?;
        let p = self.lookup(username)?;
        let path = build_filename(&p.dir, &[".ssh", "authorized_keys"]);
        // g_file_test(G_FILE_TEST_EXISTS) is access(F_OK): a dangling link is absent.
        if !path.exists() {
            return Ok(());
        }
        let drop: Vec<Vec<u8>> = keys.iter().map(|k| os_bytes(k)).collect();
        let lines: Vec<Vec<u8>> = Self::read_authkeys(&path)?
            .into_iter()
            .filter(|l| !drop.contains(l))
            .collect();
        Self::write_authkeys(&path, &lines, &p)
    }
}

/// `g_strstrip`: ASCII whitespace (including `\v`) off both ends.
fn strip(line: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = line.iter().position(|b| !ws(b)).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &line[start..end]
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// `.ssh` for the user: mkdir 0700 (before umask), chown, then chmod 0700.
fn mkdir_for_user(path: &Path, p: &Passwd) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| fs_error("failed to create directory", path, &e))?;
    std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid))
        .map_err(|e| fs_error("failed to set ownership of directory", path, &e))?;
    set_mode(path, 0o700).map_err(|e| fs_error("failed to set permissions of directory", path, &e))
}

/// guest-ssh-get-authorized-keys.
pub fn get_authorized_keys(
    agent: &Agent,
    args: GuestSshGetAuthorizedKeysArgs,
) -> Result<GuestAuthorizedKeys> {
    agent.ssh.get_keys(&args.username)
}

/// guest-ssh-add-authorized-keys.
pub fn add_authorized_keys(agent: &Agent, args: GuestSshAddAuthorizedKeysArgs) -> Result<Empty> {
    agent
        .ssh
        .add_keys(&args.username, &args.keys, args.reset.unwrap_or(false))
        .map(|()| Empty)
}

/// guest-ssh-remove-authorized-keys.
pub fn remove_authorized_keys(
    agent: &Agent,
    args: GuestSshRemoveAuthorizedKeysArgs,
) -> Result<Empty> {
    agent
        .ssh
        .remove_keys(&args.username, &args.keys)
        .map(|()| Empty)
}

#[cfg(test)]
mod tests {
    //! qemu-ga's `qga-ssh-test` (§8.3), plus the error texts and file modes.
    use super::*;
    use crate::sys::passwd::user_name;
    use crate::sys::spawn_sync::testutil::tempdir;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// Only the current user exists; its home is a temporary directory (created 0700
    /// on lookup, like the stub in commands-posix-ssh.c).
    struct FakeUsers {
        name: String,
        home: PathBuf,
    }

    impl UserDb for FakeUsers {
        fn lookup(&self, name: &[u8]) -> std::result::Result<Passwd, String> {
            if name != self.name.as_bytes() {
                return Err("Invalid user name".into());
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.home)
                .unwrap();
            // SAFETY: plain getters without arguments.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            Ok(Passwd {
                dir: self.home.clone(),
                uid,
                gid,
            })
        }
    }

    struct Fixture {
        env: SshEnv,
        user: String,
        home: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            // SAFETY: plain getter.
            let user = user_name(unsafe { libc::geteuid() }).expect("current user");
            let home = tempdir("ssh").join("home");
            let env = SshEnv {
                users: Box::new(FakeUsers {
                    name: user.clone(),
                    home: home.clone(),
                }),
            };
            Fixture { env, user, home }
        }
        fn path(&self) -> PathBuf {
            self.home.join(".ssh/authorized_keys")
        }
        fn set(&self, contents: &str) {
            std::fs::create_dir_all(self.home.join(".ssh")).unwrap();
            std::fs::write(self.path(), contents).unwrap();
        }
        fn contents(&self) -> String {
            std::fs::read_to_string(self.path()).unwrap()
        }
        fn add(&self, keys: &[&str], reset: bool) -> Result<()> {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            self.env.add_keys(&self.user, &keys, reset)
        }
        fn remove(&self, keys: &[&str]) -> Result<()> {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            self.env.remove_keys(&self.user, &keys)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(parent) = self.home.parent() {
                let _ = std::fs::remove_dir_all(parent);
            }
        }
    }

    const KEY1: &str = "algo key1 comments";
    const KEY2: &str = "algo key2 comments";

    #[test]
    fn invalid_user() {
        let f = Fixture::new();
        let e = f.env.add_keys("", &[], false).unwrap_err();
        assert_eq!(e.desc(), "failed to lookup user '': Invalid user name");
        let e = f.env.remove_keys("", &[]).unwrap_err();
        assert_eq!(e.desc(), "failed to lookup user '': Invalid user name");
        let e = f.env.get_keys("nobody-here").unwrap_err();
        assert_eq!(
            e.desc(),
            "failed to lookup user 'nobody-here': Invalid user name"
        );
    }

    #[test]
    fn invalid_key() {
        let f = Fixture::new();
        for bad in ["not a valid\nkey", "# comment"] {
            let e = f.add(&[KEY1, bad], false).unwrap_err();
            assert_eq!(e.desc(), format!("invalid OpenSSH public key: '{bad}'"));
            let e = f.remove(&[bad]).unwrap_err();
            assert_eq!(e.desc(), format!("invalid OpenSSH public key: '{bad}'"));
        }
        // Keys are checked before the user is looked up, and nothing was written.
        let e = f.env.add_keys("", &["#x".into()], false).unwrap_err();
        assert_eq!(e.desc(), "invalid OpenSSH public key: '#x'");
        assert!(!f.home.join(".ssh").exists());
    }

    #[test]
    fn add_keys() {
        let f = Fixture::new();
        f.add(&[KEY2], false).unwrap();
        assert_eq!(f.contents(), KEY2);
        f.add(&[KEY1, KEY2], false).unwrap();
        assert_eq!(f.contents(), format!("{KEY2}\n{KEY1}"));
        // .ssh 0700 and the file 0600, owned by the user.
        let ssh = std::fs::metadata(f.home.join(".ssh")).unwrap();
        assert_eq!(ssh.permissions().mode() & 0o7777, 0o700);
        let file = std::fs::metadata(f.path()).unwrap();
        assert_eq!(file.permissions().mode() & 0o7777, 0o600);
        // SAFETY: plain getter.
        assert_eq!(file.uid(), unsafe { libc::geteuid() });
    }

    #[test]
    fn add_reset_keys() {
        let f = Fixture::new();
        f.add(&[KEY1, KEY2], false).unwrap();
        assert_eq!(f.contents(), format!("{KEY1}\n{KEY2}"));
        f.add(&[KEY2], true).unwrap();
        assert_eq!(f.contents(), KEY2);
        f.add(&[], true).unwrap();
        assert_eq!(f.contents(), "");
    }

    #[test]
    fn add_keeps_existing_lines_as_is() {
        let f = Fixture::new();
        f.set("k2\n");
        f.add(&["k1"], false).unwrap();
        assert_eq!(f.contents(), "k2\n\nk1");
        f.set("k2");
        f.add(&["k1", "k1"], false).unwrap();
        assert_eq!(f.contents(), "k2\nk1");
        // An empty file splits into no lines; an empty key is accepted.
        f.set("");
        f.add(&["k1"], false).unwrap();
        assert_eq!(f.contents(), "k1");
        f.add(&[""], false).unwrap();
        assert_eq!(f.contents(), "k1\n");
        f.add(&[""], false).unwrap();
        assert_eq!(f.contents(), "k1\n", "the empty last line already counts");
    }

    #[test]
    fn remove_keys() {
        let f = Fixture::new();
        let authkeys = format!("{KEY1}\n{KEY1}\n# a commented line\nalgo some-key another\n");
        f.set(&authkeys);
        f.remove(&[KEY2]).unwrap();
        assert_eq!(f.contents(), authkeys);
        f.remove(&[KEY1, KEY2]).unwrap();
        assert_eq!(f.contents(), "# a commented line\nalgo some-key another\n");
        // No file: success, and nothing is created.
        std::fs::remove_file(f.path()).unwrap();
        f.remove(&[KEY1]).unwrap();
        assert!(!f.path().exists());
    }

    #[test]
    fn get_keys() {
        let f = Fixture::new();
        let e = f.env.get_keys(&f.user).unwrap_err();
        let p = f.path();
        assert_eq!(
            e.desc(),
            format!(
                "failed to read '{0}': Failed to open file \u{201C}{0}\u{201D}: No such file or directory",
                p.display()
            )
        );
        f.set("algo key1 comments\n# a commented line\nalgo some-key another\n");
        let keys = f.env.get_keys(&f.user).unwrap().keys;
        assert_eq!(keys, ["algo some-key another", "algo key1 comments"]);
        f.set(" \talgo a \r\n\n   # c\n\x0balgo b\x0b");
        let keys = f.env.get_keys(&f.user).unwrap().keys;
        assert_eq!(keys, ["algo b", "algo a"]);
    }

    #[test]
    fn filenames_like_glib() {
        let b = |d: &str| build_filename(Path::new(d), &[".ssh", "authorized_keys"]);
        assert_eq!(b("/home/u"), PathBuf::from("/home/u/.ssh/authorized_keys"));
        assert_eq!(
            b("/home/u//"),
            PathBuf::from("/home/u/.ssh/authorized_keys")
        );
        assert_eq!(b("/"), PathBuf::from("/.ssh/authorized_keys"));
        assert_eq!(b(""), PathBuf::from(".ssh/authorized_keys"));
    }
}
