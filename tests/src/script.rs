//! `tests/clients/inotify_script.c` driven one command at a time: each inotify call's return
//! value and errno, and the events an instance has ready, exactly as the program saw them.

use std::path::Path;

use crate::client::{Client, Stream};
use crate::{c_program, EventLine};

/// A running `inotify_script`. `Drop` kills it.
pub struct ScriptClient {
    client: Client,
}

/// The final line of a command's answer, and the events printed before it (for `read`).
#[derive(Clone, Debug)]
pub struct Answer {
    pub line: String,
    pub events: Vec<EventLine>,
}

impl ScriptClient {
    /// Starts `inotify_script`, run through `wrapper` (`["setpriv", "--reuid=65534", ...]`) when
    /// it is not empty. With `preload`, `LD_PRELOAD` names `libfakenotify.so` and
    /// `$FAKENOTIFY_SOCKET` is `socket`.
    pub fn spawn(wrapper: &[String], socket: &Path, preload: bool) -> ScriptClient {
        let program = c_program("inotify_script");
        let (exe, args): (std::ffi::OsString, Vec<std::ffi::OsString>) = match wrapper {
            [] => (program.into(), Vec::new()),
            [first, rest @ ..] => {
                let mut args: Vec<std::ffi::OsString> = rest.iter().map(Into::into).collect();
                args.push(program.into());
                (first.into(), args)
            }
        };
        let mut client = Client::spawn_with_socket(exe, &args, socket, preload);
        client.expect_line("READY", |l| l.text == "READY");
        ScriptClient { client }
    }

    /// Sends one command and waits for its answer: `OK ...`, `ERR <ERRNO>` or `EOF`. Panics
    /// on `BAD` (a malformed command is the test's mistake) or when no answer comes.
    pub fn call(&mut self, command: &str) -> Answer {
        self.client.mark();
        self.client.command(command);
        let line = self.client.expect_line(&format!("an answer to {command:?}"), |l| {
            l.stream == Stream::Stdout
                && (l.text.starts_with("OK")
                    || l.text.starts_with("ERR ")
                    || l.text.starts_with("BAD")
                    || l.text == "EOF")
        });
        if line.text.starts_with("BAD") {
            self.client.fail(&format!("the command {command:?} is malformed: {}", line.text));
        }
        Answer { line: line.text, events: self.client.events_since_mark() }
    }

    /// The process id (of the wrapper, which execs the program).
    pub fn pid(&self) -> u32 {
        self.client.pid()
    }

    /// Everything the program printed, for failure messages.
    pub fn transcript(&mut self) -> String {
        self.client.transcript()
    }
}
