//! The control domain's shell on arbitrary input: bytes through the line
//! editor (`control/src/shell/line.rs`), every finished line through the
//! command parser and the `show` path resolver (`parse.rs`), and the same
//! bytes as PS/2 scancodes through the keymap (`keymap.rs`). None may
//! panic, and the editor's state stays bounded. The modules are pure and
//! are included by path: the control domain is a bare-metal binary, not a
//! library.
//!
//! Every million inputs it prints how many finished lines named a command
//! (past the parser's first check, the command word; `cargo xtask fuzz`
//! gives libFuzzer a dictionary of them, `shell_input.dict`).

#![no_main]

extern crate alloc;

#[path = "../../control/src/keymap.rs"]
#[allow(dead_code)]
mod keymap;
#[path = "../../control/src/shell/line.rs"]
#[allow(dead_code)]
mod line;
#[path = "../../control/src/shell/parse.rs"]
#[allow(dead_code)]
mod parse;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;

/// Inputs, finished lines, and lines that named a command (parsed, or
/// refused for their arguments).
static INPUTS: AtomicU64 = AtomicU64::new(0);
static LINES: AtomicU64 = AtomicU64::new(0);
static COMMANDS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let mut editor = line::Editor::new("mojito> ");
    for &b in data {
        let step = editor.key(b);
        assert!(step.echo.len() <= line::LINE_MAX + 64);
        if let Some(line) = step.line {
            assert!(line.len() <= line::LINE_MAX * 2);
            let parsed = parse::parse(&line);
            LINES.fetch_add(1, Relaxed);
            if matches!(parsed, Ok(Some(_)) | Err(parse::Error::Usage { .. })) {
                COMMANDS.fetch_add(1, Relaxed);
            }
            let _ = parse::show_path(&line);
            let _ = parse::closest(&line);
        }
    }
    assert!(editor.render().len() <= line::LINE_MAX + 64);
    let mut map = keymap::Keymap::default();
    for &b in data {
        if let Some(bytes) = map.scancode(b) {
            assert!(bytes.as_slice().iter().all(u8::is_ascii));
        }
    }
    if INPUTS.fetch_add(1, Relaxed) % 1_000_000 == 999_999 {
        let (lines, commands) = (LINES.load(Relaxed), COMMANDS.load(Relaxed));
        eprintln!(
            "shell_input: {} inputs, {lines} lines, {commands} ({:.1}%) named a command",
            INPUTS.load(Relaxed),
            commands as f64 * 100.0 / lines.max(1) as f64
        );
    }
});
