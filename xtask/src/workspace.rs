//! Where things are, and running the commands xtask builds on.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The Mojito workspace: its root and its cargo target directory.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

impl Workspace {
    /// The workspace this xtask was compiled in (xtask lives at its top).
    pub fn locate() -> Self {
        let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf();
        let target = ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
            .iter()
            .find_map(std::env::var_os)
            .map(|dir| root.join(dir))
            .unwrap_or_else(|| root.join("target"));
        Self { root, target }
    }

    /// `target/mojito`: the images, OVMF variable stores, emulator runs.
    pub fn image_dir(&self) -> PathBuf {
        self.target.join("mojito")
    }

    /// A `cargo` command (the one running us, if any) in the workspace root.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root);
        cmd
    }

    /// `path` relative to the workspace root when it is inside it, for
    /// shorter messages.
    pub fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}

/// Runs `cmd` with the terminal as its stdio and fails unless it succeeds.
/// `what` names the step in the error, e.g. "cargo build -p loader".
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status}); its messages are above");
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output as text.
pub fn output_of(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Looks `program` up in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Renders a command line for printing, quoting what a shell would need.
pub fn command_line(cmd: &Command) -> String {
    let quote = |s: &str| {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
        if plain {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A serial log as a terminal shows it, line by line: `CR` returns to the
/// line's start and later text overwrites, `BS` steps back, `ESC [ K`
/// erases to the end of the line, `ESC [ n C` / `ESC [ n D` move right /
/// left, and other escape sequences and control characters (NUL among
/// them) vanish. The shell redraws its prompt line with these, so this is
/// the text an operator would read.
pub fn screen(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut line: Vec<char> = Vec::new();
    let mut col = 0usize;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                out.extend(line.drain(..));
                out.push('\n');
                col = 0;
            }
            '\r' => col = 0,
            '\x08' => col = col.saturating_sub(1),
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut param = String::new();
                let mut last = None;
                for p in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&p) {
                        last = Some(p);
                        break;
                    }
                    param.push(p);
                }
                let n = param.parse::<usize>().unwrap_or(1).max(1);
                match last {
                    Some('K') => line.truncate(col),
                    Some('C') => col += n,
                    Some('D') => col = col.saturating_sub(n),
                    _ => {}
                }
            }
            c if c.is_control() && c != '\t' => {}
            c => {
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    out.extend(line);
    out
}

/// Reads a serial log and renders it as the screen shows it ([`screen`]).
pub fn read_serial(path: &Path) -> String {
    screen(&read_lossy(path))
}

/// Reads a file that may not exist (yet) as text; missing reads as empty.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_renders_prompt_redraws() {
        // A guest line printed over the prompt, and the prompt drawn again.
        assert_eq!(
            screen("mojito> \r\x1b[K[demo] PASS\r\nmojito> li"),
            "[demo] PASS\nmojito> li"
        );
        // Typing, cursor left, insert: the editor redraws the line.
        assert_eq!(
            screen("mojito> lst\r\x1b[Kmojito> list\x1b[K\x1b[2D"),
            "mojito> list"
        );
        assert_eq!(screen("ab\x08c\n\x00x\x1b[=3hy"), "ac\nxy");
    }
}
