//! A private `sshd` on 127.0.0.1 for sshfs mounts: throwaway host and user keys, its own
//! configuration, a free port; stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{run, Background};
use crate::WAIT;

/// What to install when ssh is missing.
pub const SSH_PACKAGES: &str =
    "Debian/Ubuntu: apt-get install sshfs openssh-server openssh-client fuse3";

/// A running `sshd -D -e` that lets root in with [`Sshd::identity`] only.
pub struct Sshd {
    pub port: u16,
    /// The private key authorised to log in as root.
    pub identity: PathBuf,
    process: Background,
}

impl Sshd {
    /// Generates keys and a configuration in `dir` and starts sshd on a free port (another,
    /// a few times, if something took the port first); panics with sshd's log if it does not
    /// listen within [`crate::WAIT`].
    pub fn start(dir: &Path) -> Sshd {
        let host_key = dir.join("host_key");
        let identity = dir.join("user_key");
        for key in [&host_key, &identity] {
            keygen(key);
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized)
            .unwrap_or_else(|e| panic!("copy the user key to {}: {e}", authorized.display()));
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd (sshd needs it)");
        let program = sshd_program();
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let config = dir.join(format!("sshd_config.{attempt}"));
            std::fs::write(&config, config_text(dir, port, &host_key, &authorized))
                .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
            let mut command = Command::new(&program);
            command.arg("-D").arg("-e").arg("-f").arg(&config);
            let log = dir.join(format!("sshd.{attempt}.log"));
            let process = Background::spawn("sshd", &mut command, log, SSH_PACKAGES);
            let mut sshd = Sshd { port, identity: identity.clone(), process };
            match sshd.wait_listening() {
                Ok(()) => return sshd,
                Err(log) => last_log = log,
            }
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start listening on 127.0.0.1; its log:\n{last_log}");
    }

    /// `Err(log)` when sshd exits, or does not say it listens within [`WAIT`].
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        let listening = format!("Server listening on 127.0.0.1 port {}", self.port);
        loop {
            let log = self.process.log();
            if log.contains(&listening) {
                return Ok(());
            }
            if self.process.exited().is_some() || Instant::now() > deadline {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything sshd logged so far (connections, authentication failures).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

fn config_text(dir: &Path, port: u16, host_key: &Path, authorized: &Path) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {}\n\
         AuthorizedKeysFile {}\n\
         PidFile {}\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         Subsystem sftp internal-sftp\n",
        host_key.display(),
        authorized.display(),
        dir.join("sshd.pid").display(),
    )
}

/// `ssh-keygen` an ed25519 key without passphrase at `path` (and `path.pub`).
fn keygen(path: &Path) {
    let mut command = Command::new("ssh-keygen");
    command.args(["-q", "-t", "ed25519", "-N", "", "-C", "fakenotify-tests", "-f"]).arg(path);
    run(&mut command, SSH_PACKAGES);
}

/// sshd wants its absolute path (it re-executes itself); `/usr/sbin` is often not on a
/// user's PATH.
fn sshd_program() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("sshd")).find(|p| p.is_file())
    });
    let program = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
    if !program.is_file() {
        panic!("sshd is not installed ({SSH_PACKAGES})");
    }
    program
}

/// A port nothing listens on right now (another process may take it before sshd does; the
/// caller retries).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener.local_addr().expect("the bound listener's address").port()
}
